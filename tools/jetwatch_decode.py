#!/usr/bin/env python3
"""Decode jetwatch detection messages (wire version 1) -- no dependencies.

Spec: docs/wire-format.md. Both encodings are accepted: JSON (first byte '{') and
postcard (first byte = version 1). Prints one JSON object per message, shaped like the
Rust decoder's `DecodedFrame`:

  {"version": 1, "format": "postcard", "header": {...}, "detections": [...]}

Usage:
  jetwatch_decode.py --hex 0100...          decode hex strings (several allowed)
  jetwatch_decode.py FILE...                decode raw message files ('-' = stdin)
  jetwatch_decode.py --labels labels.txt    class names for postcard messages (one a line)

As a library (e.g. in a paho-mqtt callback):
  from jetwatch_decode import decode
  frame = decode(msg.payload, labels=["person", "bicycle", ...])
"""

import json
import sys

WIRE_VERSION = 1


class WireError(ValueError):
    pass


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        if self.pos >= len(self.data):
            raise WireError("truncated message at byte %d" % self.pos)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self, bits):
        """Unsigned LEB128 varint as postcard writes it: 7 bits a byte, low first."""
        value = 0
        shift = 0
        max_bytes = (bits + 6) // 7
        for _ in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b & 0x80 == 0:
                if value >= 1 << bits:
                    raise WireError("varint out of range for u%d" % bits)
                return value
            shift += 7
        raise WireError("varint longer than %d bytes for u%d" % (max_bytes, bits))

    def zigzag(self, bits):
        """Signed integer: zigzag (0,-1,1,-2,... -> 0,1,2,3,...) then varint."""
        u = self.varint(bits)
        return (u >> 1) ^ -(u & 1)


def _decode_postcard(data, labels):
    r = _Reader(data)
    version = r.byte()
    if version != WIRE_VERSION:
        raise WireError(
            "wire version %d is not supported (this decoder knows version %d)"
            % (version, WIRE_VERSION)
        )
    header = {
        "stream": r.varint(16),
        "seq": r.varint(64),
        "pts_us": r.zigzag(64),
        "capture_unix_ms": r.varint(64),
        "width": r.varint(16),
        "height": r.varint(16),
    }
    count = r.varint(64)
    if count > len(data):  # every detection takes at least 7 bytes
        raise WireError("detection count %d exceeds the message size" % count)
    dets = []
    for _ in range(count):
        cls = r.varint(16)
        score_q = r.byte()
        box = [r.varint(16), r.varint(16), r.varint(16), r.varint(16)]
        track = r.varint(32)
        dets.append(
            {
                "class": cls,
                "label": labels[cls] if labels and cls < len(labels) else None,
                "score": score_q / 255.0,
                "box": box,
                "track": track,
            }
        )
    if r.pos != len(data):
        raise WireError("%d trailing bytes after the frame" % (len(data) - r.pos))
    return {"version": version, "format": "postcard", "header": header, "detections": dets}


def _decode_json(data):
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError("malformed json message: %s" % e)
    if not isinstance(obj, dict) or "v" not in obj:
        raise WireError('malformed json message: no "v" (version) field')
    if obj["v"] != WIRE_VERSION:
        raise WireError(
            "wire version %r is not supported (this decoder knows version %d)"
            % (obj["v"], WIRE_VERSION)
        )
    try:
        header = {k: int(obj[k]) for k in
                  ("stream", "seq", "pts_us", "capture_unix_ms", "width", "height")}
        dets = [
            {
                "class": int(d["class"]),
                "label": d.get("label"),
                "score": float(d["score"]),
                "box": [int(x) for x in d["box"]],
                "track": int(d["track"]),
            }
            for d in obj["detections"]
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise WireError("malformed json message: %r" % (e,))
    return {"version": obj["v"], "format": "json", "header": header, "detections": dets}


def decode(data, labels=None):
    """Decodes one message (bytes). Raises WireError on anything malformed."""
    data = bytes(data)
    if not data:
        raise WireError("empty message")
    if data[0] == ord("{"):
        return _decode_json(data)
    return _decode_postcard(data, labels)


def main(argv):
    labels = None
    inputs = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            return 0
        if a == "--labels":
            with open(argv[i + 1], encoding="utf-8") as f:
                labels = [line.rstrip("\n") for line in f]
            i += 2
            continue
        if a == "--hex":
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                try:
                    inputs.append(bytes.fromhex(argv[i]))
                except ValueError as e:
                    print(json.dumps({"error": "bad hex: %s" % e}))
                    return 1
                i += 1
            continue
        if a == "-":
            inputs.append(sys.stdin.buffer.read())
        else:
            with open(a, "rb") as f:
                inputs.append(f.read())
        i += 1
    status = 0
    for data in inputs:
        try:
            print(json.dumps(decode(data, labels)))
        except WireError as e:
            print(json.dumps({"error": str(e)}))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
