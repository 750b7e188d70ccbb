"""The application: the command line, the daemon, the arq jobs, the demo, the embedded servers."""
