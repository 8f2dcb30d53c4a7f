/**
 * The children this isolate started and has not yet seen end: what
 * `activeChildren()` lists, and the daemons to end when this process exits.
 */
import { ExitStage, atExit } from '../finalize.js';

export interface ChildRecord {
  isAlive(): boolean;
  readonly daemon: boolean;
  terminate(): void;
}

export const liveChildren = new Set<ChildRecord>();

atExit(ExitStage.Children, () => {
  // Python terminates daemonic children at exit; non-daemon ones kept us
  // alive until they ended (or process.exit() cut that short, and then the
  // death signal ends them).
  for (const child of liveChildren) if (child.daemon && child.isAlive()) child.terminate();
});
