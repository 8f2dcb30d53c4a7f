// Terminal 1: serves a manager over TCP until Ctrl-C.
//   node --import tsx examples/remote-manager/server.ts 0.0.0.0:50000 key.txt
import * as mp from 'multiprocessing-ts';
import { BoardManager, parseAddress, readAuthkey } from './shared.js';

if (mp.isMainProcess()) {
  const [address = '127.0.0.1:50000', keyFile = 'key.txt'] = process.argv.slice(2);
  const server = await mp.serveManager({ address: parseAddress(address), authkey: readAuthkey(keyFile), managerClass: BoardManager });
  const [host, port] = server.address as [string, number];
  console.log(`serving at ${host}:${port}; Ctrl-C stops it`);
  process.once('SIGINT', () => server.shutdown());
  await server.stopped; // the listener is closed, every client disconnected
  console.log('stopped');
}
