// Seed example 1: a child has its own memory, so globals are not shared.
import * as mp from 'multiprocessing-ts';

// empty list with global scope
const result: number[] = [];

export function squareList(mylist: number[]) {
  // function to square a given list
  // append squares of mylist to global list result
  for (const num of mylist) {
    result.push(num * num);
  }
  // print global list result
  console.log(`Result(in process p1): ${pyList(result)}`);
}

/** Python's `str(list)`: `[1, 4, 9, 16]`. */
export function pyList(xs: ArrayLike<unknown>) {
  return `[${Array.from(xs).join(', ')}]`;
}

if (mp.isMainProcess()) {
  // input list
  const mylist = [1, 2, 3, 4];
  // creating new process
  const p1 = new mp.Process({ target: squareList, args: [mylist] });
  // starting process
  p1.start();
  // wait until process is finished
  await p1.join();
  // print global result list
  console.log(`Result(in main program): ${pyList(result)}`);
}
