"""Running the standalone server: ``serve`` (what ``synthflow-mock serve`` does), the supervisor that
owns the child processes and the listening sockets, and the event loop they run on."""
