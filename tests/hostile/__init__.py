"""The hostile corpus: servers that misbehave, feeds that attack, and the table of cases.

``cases.CASES`` is the data: each case names how the server answers and what
the pipeline must do about it. ``server`` holds the local servers that play
the answers (a hostile one on 127.0.0.2, which the tests' address policy
treats as the public internet, and a sentinel on 127.0.0.1 and [::1] that
counts every connection: it must see none). ``feeds`` builds the documents.
"""
