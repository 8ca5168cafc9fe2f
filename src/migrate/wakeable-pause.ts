/**
 * A pause between polls that an event can cut short: `wake()` ends the pause in progress, or,
 * when none is (a query in flight), makes the next one end at once, so an event is never lost
 * between two polls. Used where a paused guest waits for the poll to notice (a MIGRATION event
 * at the destination's load or the source's pre-switchover, the disk's last pass).
 */
export class WakeablePause {
  private wakeNow: (() => void) | undefined;
  private woken = false;

  wake(): void {
    if (this.wakeNow) this.wakeNow();
    else this.woken = true;
  }

  /** Resolves after `ms`, or at the first wake(). */
  pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.woken) {
        this.woken = false;
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wakeNow = undefined;
        resolve();
      }
      this.wakeNow = done;
    });
  }
}
