/**
 * The vocabulary shared by the runner, the cases and the report.
 *
 * A *case* is one question ("how fast is start+join?") answered by several
 * *variants* (ours and the anchors). The runner asks each variant for one
 * *sample* per round, round-robin, and a row's figure is the median of its
 * samples.
 */

/** Which direction is good for a case's unit. */
export type Better = 'lower' | 'higher';

/** One measurement of one variant. */
export interface Sample {
  /** The figure, in the case's unit. */
  readonly value: number;
  /** Details kept in the JSON output (reps, secondary figures…). */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** CPU seconds of helpers the sample started and nobody reaped (for the noise probe). */
  readonly untrackedCpuS?: number;
  /** A failed correctness check (e.g. a lost increment): the row fails whatever its speed. */
  readonly error?: string;
}

/** The goal a row has to meet, relative to another row of the same case. */
export interface Target {
  /** `id` of the anchor variant the ratio is taken against. */
  readonly anchor: string;
  /** `ours / anchor` must be `<=` (times) or `>=` (rates) `ratio`. */
  readonly op: '<=' | '>=';
  readonly ratio: number;
}

/**
 * A second row read off the same samples: one figure from each sample's
 * `extra` (e.g. the increment loop alone, without child exit), judged on
 * its own against another row or view.
 */
export interface View {
  readonly id: string;
  readonly label: string;
  /** Key of `Sample.extra` holding the figure, in the case's unit. */
  readonly metric: string;
  readonly anchor?: string;
  readonly target?: Target;
}

export interface Variant {
  /** Stable id, used in JSON and as an anchor reference, e.g. `mpts.thread`. */
  readonly id: string;
  /** Who is measured: `multiprocessing-ts`, `node-worker_threads`, `python-multiprocessing`… */
  readonly system: string;
  /** Short label for the table. */
  readonly label: string;
  /** Row whose median the RATIO column divides by; informational when there is no target. */
  readonly anchor?: string;
  readonly target?: Target;
  /** More rows read off this variant's samples. */
  readonly views?: readonly View[];
  /** Runs once before the first round; not timed (JIT, lazily created helpers). */
  warmup?(): Promise<void>;
  /** Takes one sample. Throwing marks the row as failed and drops it from later rounds. */
  sample(): Promise<Sample>;
}

export interface Case {
  /** CLI name, e.g. `start`. */
  readonly name: string;
  readonly title: string;
  readonly unit: string;
  readonly better: Better;
  /** One line on how a sample is taken, printed above the table. */
  readonly method: string;
  readonly variants: readonly Variant[];
}

/** Settings every case factory receives. */
export interface CaseOptions {
  readonly quick: boolean;
}

/** A case factory, so heavy settings are only computed for the cases selected. */
export interface CaseDefinition {
  readonly name: string;
  readonly summary: string;
  make(options: CaseOptions): Case;
}

/** The outcome of one row after all rounds. */
export interface RowResult {
  readonly caseName: string;
  readonly variant: Variant;
  readonly unit: string;
  /** One entry per round that produced a sample. */
  readonly values: number[];
  /** Foreign load of each kept sample, cores. */
  readonly foreign: number[];
  /** Samples rerun because of foreign load. */
  readonly retries: number;
  readonly extras: Readonly<Record<string, unknown>>[];
  /** Set when a sample threw or failed its check. */
  readonly error: string | null;
  readonly median: number;
  readonly ratio: number | null;
  /** null when the row has no target (an anchor, or informational). */
  readonly pass: boolean | null;
}
