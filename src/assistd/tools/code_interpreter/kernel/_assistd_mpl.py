"""matplotlib backend of the kernel (MPLBACKEND=module://_assistd_mpl): Agg rendering, and ``plt.show()``
hands the open figures to the kernel as PNGs (as a notebook would show them) instead of doing nothing."""

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args, **kwargs):
    import _assistd_hooks  # registered by repl.py

    _assistd_hooks.capture_figures()
