// Seed example 4: a Queue carries items from one process to another.
import * as mp from 'multiprocessing-ts';

export function squareList(mylist: number[], q: mp.Queue<number>) {
  // function to square a given list
  // append squares of mylist to queue
  for (const num of mylist) {
    q.putSync(num * num);
  }
}

export function printQueue(q: mp.Queue<number>) {
  // function to print queue elements
  console.log('Queue elements:');
  while (!q.empty()) {
    console.log(q.getSync());
  }
  console.log('Queue is now empty!');
}

if (mp.isMainProcess()) {
  // input list
  const mylist = [1, 2, 3, 4];
  // creating multiprocessing Queue
  const q = new mp.Queue<number>();
  // creating new processes
  const p1 = new mp.Process({ target: squareList, args: [mylist, q] });
  const p2 = new mp.Process({ target: printQueue, args: [q] });
  // running process p1 to square list
  p1.start();
  await p1.join();
  // running process p2 to get queue elements
  p2.start();
  await p2.join();
}
