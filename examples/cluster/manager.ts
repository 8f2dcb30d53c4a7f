// Seed example 3 with its list in Redis instead of a manager process: the
// same two processes, the same output; the list outlives them (by name).
//
//   MULTIPROCESSING_TS_CLUSTER=redis://127.0.0.1:6379/0 node --import tsx examples/cluster/manager.ts
import * as mp from 'multiprocessing-ts';

type Record = [name: string, score: number];

export async function printRecords(records: mp.ClusterList<Record>) {
  // function to print record(tuples) in records(list)
  for await (const record of records) {
    console.log(`Name: ${record[0]}\nScore: ${record[1]}\n`);
  }
}

export async function insertRecord(record: Record, records: mp.ClusterList<Record>) {
  // function to add a new record to records(list)
  await records.append(record);
  console.log('New record added!\n');
}

if (mp.isMainProcess()) {
  const ctx = mp.getContext('cluster'); // the URL from MULTIPROCESSING_TS_CLUSTER
  await using manager = await ctx.Manager();
  // creating a list in Redis
  const records = await manager.list<Record>([['Sam', 10], ['Adam', 9], ['Kevin', 9]]);
  // new record to be inserted in records
  const newRecord: Record = ['Jeff', 8];

  // creating new processes
  const p1 = new mp.Process({ target: insertRecord, args: [newRecord, records] });
  const p2 = new mp.Process({ target: printRecords, args: [records] });

  // running process p1 to insert new record
  p1.start();
  await p1.join();

  // running process p2 to print records
  p2.start();
  await p2.join();
  await records.unlink(); // the list would otherwise stay in Redis
}
