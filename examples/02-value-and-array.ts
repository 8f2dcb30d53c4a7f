// Seed example 2: Value and Array live in shared memory, seen by both processes.
import * as mp from 'multiprocessing-ts';

export function squareList(mylist: number[], result: mp.SynchronizedArray, squareSum: mp.SynchronizedValue) {
  // function to square a given list
  // append squares of mylist to result array
  mylist.forEach((num, idx) => {
    result[idx] = num * num;
  });
  // square_sum value
  squareSum.value = Array.from(result).reduce((a, b) => a + b, 0);
  // print result Array
  console.log(`Result(in process p1): ${pyList(result)}`);
  // print square_sum Value
  console.log(`Sum of squares(in process p1): ${squareSum.value}`);
}

/** Python's `str(list)`: `[1, 4, 9, 16]`. */
export function pyList(xs: Iterable<unknown>) {
  return `[${Array.from(xs).join(', ')}]`;
}

if (mp.isMainProcess()) {
  // input list
  const mylist = [1, 2, 3, 4];
  // creating Array of int data type with space for 4 integers
  const result = mp.Array('i', 4);
  // creating Value of int data type
  const squareSum = mp.Value('i');
  // creating new process
  const p1 = new mp.Process({ target: squareList, args: [mylist, result, squareSum] });
  // starting process
  p1.start();
  // wait until the process is finished
  await p1.join();
  // print result array
  console.log(`Result(in main program): ${pyList(result)}`);
  // print square_sum Value
  console.log(`Sum of squares(in main program): ${squareSum.value}`);
}
