/**
 * The longest delay a Node timer keeps: `setTimeout` with more fires after
 * 1 ms (and warns). Waits past it are taken as forever, or re-armed.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
