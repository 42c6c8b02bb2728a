"""What the "method:option=value,..." specs share (token reduction, attention approximations)."""


def split_items(rest, spec, error, example):
    """The option=value items of `rest` (the text after "method:"), split on commas outside brackets;
    `error` (an exception class) names `example` when the brackets do not balance."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(rest + ","):
        depth += (c == "[") - (c == "]")
        if depth < 0 or depth > 1:
            raise error(f"unbalanced brackets in {spec!r}: expected one list like {example}")
        if c == "," and depth == 0:
            if rest[start:i].strip():
                items.append(rest[start:i])
            start = i + 1
    if depth:
        raise error(f"unbalanced brackets in {spec!r}: expected one list like {example}")
    return items
