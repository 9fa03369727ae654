"""Code that runs INSIDE the sandbox (bound read-only at /opt/assistd-kernel): stdlib only, never imported
by the server. ``repl.py`` is the kernel; ``_assistd_mpl.py`` the matplotlib backend that hands figures to
it. A package only so that packaging ships the files."""
