"""The progress bar of ``verbose >= 2``: tqdm when it is installed, one plain stderr line otherwise.

Design
1. The bar counts training rows over ``max_iter`` epochs (its total; early stopping may end
   sooner), so its rate is samples/s and its ETA the time to ``max_iter``.
2. It advances inside an epoch: the compiled epoch calls ``update(rows_done)`` every ~1e9 GEMM
   flops (see ``cprop._train``), and the estimator calls ``end_epoch`` after each epoch.
3. The bar is redrawn at most every 0.1 s (and after each epoch).  Without tqdm it is one line
   rewritten in place with a carriage return, ended with a newline by ``close``.
4. The bar is decoration: it never stops training.  With no stderr (``sys.stderr is None``, as
   under pythonw or a daemon) there is no bar; if drawing it raises (a closed or broken
   stream), the bar switches itself off and training goes on.
"""
import sys
import time


def _fmt_time(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """Rows trained out of ``max_iter * n_samples``; ``use_tqdm=None`` uses tqdm if importable."""

    def __init__(self, n_samples, max_iter, epoch0=0, use_tqdm=None, file=None):
        self.n_samples = int(n_samples)
        self.max_iter = int(max_iter)
        self.total = self.n_samples * self.max_iter
        self.file = sys.stderr if file is None else file
        self._off = self.file is None      # design 4: nowhere to draw
        self.done = 0            # rows of completed epochs
        self.epoch = 0           # epochs completed in this call
        self.epoch0 = epoch0     # epochs before this call (partial_fit, warm_start)
        self.loss = None
        self.metrics = {}        # {name: value} of the last epoch (validation loss, score)
        self._tqdm = None
        if (use_tqdm is None or use_tqdm) and not self._off:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if use_tqdm:
                    raise
            else:
                self._guard(lambda: setattr(self, "_tqdm", tqdm(
                    total=self.total, unit="samples", unit_scale=True, file=self.file,
                    leave=True, dynamic_ncols=True)))
        self._start = time.perf_counter()
        self._last_print = 0.0

    @property
    def uses_tqdm(self):
        return self._tqdm is not None

    def update(self, rows_in_epoch):
        """Progress inside the running epoch (rows of it done so far)."""
        self._show(self.done + int(rows_in_epoch))

    def end_epoch(self, rows, loss, partial=False, metrics=None):
        """An epoch ended: its rows, training loss and (optional) ``metrics`` {name: value}
        shown beside the loss, e.g. {'val_loss': 0.3, 'val_score': 0.9}."""
        self.done += int(rows)
        self.epoch += 0 if partial else 1
        self.loss = loss
        self.metrics = {k: v for k, v in (metrics or {}).items() if v is not None}
        self._show(self.done, force=True)

    def _guard(self, draw):
        """Run ``draw`` unless the bar is off; switch it off if drawing raises (design 4)."""
        if self._off:
            return
        try:
            draw()
        except Exception:  # noqa: BLE001 (any failure of the stream: the bar is decoration)
            self._off = True
            self._tqdm = None

    def _show(self, pos, force=False):
        self._guard(lambda: self._draw(pos, force))

    def _draw(self, pos, force):
        now = time.perf_counter()
        if not force and now - self._last_print < 0.1:
            return
        self._last_print = now
        desc = f"epoch {self.epoch0 + min(self.epoch + 1, self.max_iter)}"
        if self._tqdm is not None:
            self._tqdm.n = pos
            self._tqdm.set_description(desc, refresh=False)
            if self.loss is not None:
                self._tqdm.set_postfix(loss=f"{self.loss:.5g}", refresh=False,
                                       **{k: f"{v:.5g}" for k, v in self.metrics.items()})
            self._tqdm.refresh()
            return
        elapsed = now - self._start
        rate = pos / elapsed if elapsed > 0 else 0.0
        eta = (self.total - pos) / rate if rate > 0 else 0.0
        pct = 100.0 * pos / self.total if self.total else 100.0
        loss = f", loss {self.loss:.5g}" if self.loss is not None else ""
        loss += "".join(f", {k} {v:.5g}" for k, v in self.metrics.items())
        self.file.write(f"\r{desc}/{self.epoch0 + self.max_iter} {pct:5.1f}% "
                        f"{pos}/{self.total} samples [{_fmt_time(elapsed)}<{_fmt_time(eta)}, "
                        f"{rate:.0f} samples/s{loss}]")
        self.file.flush()

    def write(self, msg):
        """Print a line to stdout without breaking the bar (the verbose epoch lines)."""
        if self._tqdm is not None:
            tqdm_bar = self._tqdm
            self._guard(lambda: tqdm_bar.write(msg, file=sys.stdout))
            if not self._off:
                return
        self._guard(self._end_line)   # end the bar's line; it is drawn again below
        print(msg, flush=True)

    def _end_line(self):
        if self._last_print:
            self._last_print = 0.0
            self.file.write("\n")
            self.file.flush()

    def close(self):
        if self._tqdm is not None:
            self._guard(self._tqdm.close)
        else:
            self._guard(self._end_line)
