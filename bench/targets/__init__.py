"""One module per `make bench` target: `run(bench)` measures it and stores its `TargetResult`."""
