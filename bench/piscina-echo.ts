/** The task a piscina worker runs in the queue benchmark: echo the 64-byte request back. */
export default function echo(request: Int32Array): Int32Array {
  return request;
}
