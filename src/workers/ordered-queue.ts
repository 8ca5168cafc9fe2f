/**
 * Runs results through `consume` in the order their tasks were added, with at most `limit`
 * tasks outstanding: `add` waits (consuming the oldest) while the queue is full. With a
 * consumer that waits for a slow writer, this is the backpressure of the whole pipeline: the
 * producer stops reading input until frames leave, so memory stays at `limit` frames.
 */
export class OrderedQueue<T> {
  private readonly tasks: Promise<T>[] = [];

  constructor(
    private readonly limit: number,
    private readonly consume: (value: T) => void | Promise<void>,
  ) {}

  get size(): number {
    return this.tasks.length;
  }

  async add(task: Promise<T>): Promise<void> {
    // Rejections are handled when the task reaches the head; until then, none is unhandled.
    task.catch(() => {});
    this.tasks.push(task);
    while (this.tasks.length > this.limit) await this.takeOldest();
  }

  /** Consumes everything outstanding. */
  async drain(): Promise<void> {
    while (this.tasks.length > 0) await this.takeOldest();
  }

  /** A task or its consumer failed: that error was the first in order, and was thrown. */
  failed = false;

  private async takeOldest(): Promise<void> {
    const task = this.tasks.shift()!;
    try {
      await this.consume(await task);
    } catch (error) {
      this.failed = true;
      throw error;
    }
  }
}
