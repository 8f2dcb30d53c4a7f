// Terminal 2 (and 3, or another machine): adds a line to the list every client shares, and prints it.
//   node --import tsx examples/remote-manager/client.ts 127.0.0.1:50000 key.txt alice
import * as mp from 'multiprocessing-ts';
import { BoardManager, parseAddress, readAuthkey } from './shared.js';

if (mp.isMainProcess()) {
  const [address = '127.0.0.1:50000', keyFile = 'key.txt', name = 'someone'] = process.argv.slice(2);
  const manager = new BoardManager({ address: parseAddress(address), authkey: readAuthkey(keyFile) });
  await manager.connect(); // AuthenticationError if the key differs from the server's
  const board = await manager.board();
  // The first client's list becomes the shared one; later clients get that same list.
  const guestbook = (await board.setdefault('guestbook', await manager.list())) as mp.ListProxy<string>;
  await guestbook.append(`${name} was here`);
  for await (const line of guestbook) console.log(line);
}
