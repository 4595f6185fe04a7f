"""Showing PNGs (overlays, maps, grids) inline in a notebook, or as arrays without one."""

import os


def show_image(path, width=None):
    """Displays a PNG inline (IPython) and returns the display object; outside IPython returns the bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path}: not a PNG")
    try:
        from IPython.display import Image, display
    except ImportError:
        return data
    img = Image(data=data, width=width)
    display(img)
    return img


def show_images(paths, width=256, columns=4):
    """Displays several PNGs side by side (HTML grid), captioned with their file names."""
    import base64

    cells = []
    for p in paths:
        with open(p, "rb") as f:
            b64 = base64.b64encode(f.read()).decode()
        name = os.path.basename(p)
        cells.append(
            f'<figure style="margin:4px"><img src="data:image/png;base64,{b64}" width="{width}">'
            f'<figcaption style="font-size:10px">{name}</figcaption></figure>'
        )
    html = f'<div style="display:grid;grid-template-columns:repeat({columns},auto)">{"".join(cells)}</div>'
    try:
        from IPython.display import HTML, display
    except ImportError:
        return html
    display(HTML(html))
    return html
