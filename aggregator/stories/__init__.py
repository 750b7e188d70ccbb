"""Stories: the copies of one news story, grouped. Pure: text folding, prints, rules, plan."""
