"""Sample regional feeds for `aggregator demo`, written for this project; fictional outlets on *.example."""
