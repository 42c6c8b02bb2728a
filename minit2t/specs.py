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


def parse_spec(spec, methods, value, error, what, example, list_example, default=""):
    """(method, options) from "method:option=value,...": the method's defaults from `methods`
    ({method: {option: default}}), each option given parsed by value(method, key, text, spec);
    `what` names the kind of spec in the one-line `error`s, with `example`s of a spec and a list."""
    if not isinstance(spec, str):
        article = "an" if what[0] in "aeiou" else "a"
        raise error(f"{article} {what} spec is a string like {example!r}, got {type(spec).__name__}")
    method, _, rest = spec.strip().partition(":")
    method = method.strip().lower() or default
    if method not in methods:
        raise error(f"unknown {what} {method!r} in {spec!r}; expected one of {', '.join(methods)}")
    options = dict(methods[method])
    for item in split_items(rest, spec, error, list_example):
        key, eq, text = item.partition("=")
        key = key.strip()
        if key not in options or not eq:
            expected = ", ".join(f"{k}=" for k in options) or "no options"
            raise error(f"{method}: bad option {item.strip()!r} in {spec!r}; expected {expected}")
        options[key] = value(method, key, text.strip(), spec)
    return method, options
