/**
 * A progress display for `onProgress(done, total)`: a bar redrawn in place
 * on a terminal (at most every 50 ms, and at the end), or a plain line at
 * each quarter when the output is a file or a pipe, where carriage returns
 * would only clutter it.
 */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): (done: number, total: number) => void {
  const width = 30;
  let lastDraw = 0;
  let lastQuarter = -1;
  return (done, total) => {
    const fraction = total > 0 ? done / total : 1;
    if (!stream.isTTY) {
      const quarter = Math.floor(fraction * 4);
      if (quarter > lastQuarter) {
        lastQuarter = quarter;
        stream.write(`${label}: ${done}/${total} (${Math.round(fraction * 100)}%)\n`);
      }
      return;
    }
    const now = performance.now();
    if (done < total && now - lastDraw < 50) return;
    lastDraw = now;
    const filled = Math.round(fraction * width);
    stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
    if (done >= total) stream.write('\n');
  };
}
