"""Sample regional feeds for `aggregator demo`, written for this project.

Fictional outlets on *.example domains."""
