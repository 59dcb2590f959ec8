"""The report as one self-contained HTML page: inline style, inline PNG figures.

Every number of a table sits in a cell marked with its path in
:meth:`Diagnosis.to_dict` (``data-key``), so a reader program (or a test) can
check the page against the dictionary. Nothing is fetched from the network.
"""

from __future__ import annotations

from html import escape

from ._layout import blocks

__all__ = ["render"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; background: #fff; line-height: 1.45; }
h1 { border-bottom: 2px solid #3a6ea5; padding-bottom: .2em; }
h2 { margin-top: 1.6em; color: #3a6ea5; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #eef3f8; }
td:first-child, th:first-child { text-align: left; }
tr.recommended td { background: #eaf6ea; font-weight: 600; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; border-radius: 4px; }
figure { margin: 1em 0; }
figcaption { font-size: .85em; color: #555; }
img { max-width: 100%; }
.note { color: #a33; }
"""


def _table(block):
    _, header, rows = block
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{escape(h)}</th>"
                                              for h in header) + "</tr></thead>",
           "<tbody>"]
    for row in rows:
        mark = any(key and key.endswith("/recommended") and text == "yes"
                   for text, key in row)
        cells = []
        for text, key in row:
            attrs = "" if key is None else f' data-key="{escape(key)}"'
            cells.append(f"<td{attrs}>{escape(text)}</td>")
        tr = '<tr class="recommended">' if mark else "<tr>"
        out.append(tr + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figure(block, images, why, doc):
    _, name, caption = block
    if why:
        return f'<p class="note">({escape(caption)} {escape(why)})</p>'
    captions = [caption] * len(images.get(name, []))
    if name == "thumbnails":
        captions = [f"Class {s['class']}, slice {s['slice']}: {s['size']} samples, "
                    f"head accuracy {s['accuracy']:.3f}; typical samples."
                    for s in doc["shortcut"]["slices"]]
    return "\n".join(
        f'<figure><img alt="{escape(text)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{escape(text)}</figcaption></figure>"
        for png, text in zip(images.get(name, []), captions))


def _images(doc, thumbnails):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}, "Figures need matplotlib: pip install 'sklearn-spur[plot]'."
    from ._figures import figures

    return figures(doc, thumbnails), None


def render(doc, thumbnails):
    """The HTML page of the report ``doc`` (:meth:`Diagnosis.to_dict`)."""
    images, why = _images(doc, thumbnails)
    body = []
    for block in blocks(doc):
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{escape(block[1])}</{kind}>")
        elif kind == "code":
            body.append(f"<pre><code>{escape(block[1])}</code></pre>")
        elif kind == "table":
            body.append(_table(block))
        elif kind == "figure":
            if block[1] == "thumbnails" and not images.get("thumbnails") and not why:
                continue  # no images passed
            body.append(_figure(block, images, why, doc))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>sklearn-spur diagnosis</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
