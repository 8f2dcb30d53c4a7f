// Seed example 5: a Pipe connects two processes.
import * as mp from 'multiprocessing-ts';

export function sender(conn: mp.Connection, msgs: string[]) {
  // function to send messages to other end of pipe
  for (const msg of msgs) {
    conn.sendSync(msg);
    console.log(`Sent the message: ${msg}`);
  }
  conn.close();
}

export function receiver(conn: mp.Connection) {
  // function to print the messages received from other end of pipe
  while (true) {
    const msg = conn.recvSync();
    if (msg === 'END') break;
    console.log(`Received the message: ${msg}`);
  }
}

if (mp.isMainProcess()) {
  // messages to be sent
  const msgs = ['hello', 'hey', 'hru?', 'END'];
  // creating a pipe
  const [parentConn, childConn] = mp.Pipe();
  // creating new processes
  const p1 = new mp.Process({ target: sender, args: [parentConn, msgs] });
  const p2 = new mp.Process({ target: receiver, args: [childConn] });
  // running processes
  p1.start();
  p2.start();
  // wait until processes finish
  await p1.join();
  await p2.join();
}
