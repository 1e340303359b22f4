"""Themes (docs/themes.md): a folder overriding part of the default theme, and the default
theme of a non-editable install (a wheel in a fresh virtual environment)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dinoreport.render import render_site
from dinoreport.theme import DEFAULT_THEME, STATIC_NAMES
from sample_page import make_sample_page

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

#: the example figure template of docs/themes.md
EXAMPLE_FIGURE = """\
<figure class="fig kind-{{ obj.kind | replace('_', '-') }}" id="{{ obj.id }}">
{% for row in obj.rows %}
<div class="row">{% if row.label %}<span class="row-label">{{ row.label }}</span>{% endif %}
{% for p in row.panels %}<img {{ img_attrs(p.file) }} alt="{{ p.alt }}">{% endfor %}
</div>
{% endfor %}
<figcaption>Fig. {{ num }}: {{ obj.caption }}</figcaption>
</figure>
"""


def test_the_docs_example_theme_overrides_only_its_files(tmp_path):
    theme = tmp_path / "my-theme"
    (theme / "static").mkdir(parents=True)
    css = "/* my theme */\n:root { --accent: #7a1f5c; }\n"
    (theme / "static" / "style.css").write_text(css, encoding="utf-8")
    (theme / "figure.html.j2").write_text(EXAMPLE_FIGURE, encoding="utf-8")
    assert EXAMPLE_FIGURE in (ROOT / "docs" / "themes.md").read_text(encoding="utf-8")
    out = tmp_path / "site"
    out.mkdir()
    page = make_sample_page(out)
    render_site(page, site_src=ROOT / "site_src", out=out, theme=theme)
    index, report = ((out / n).read_text(encoding="utf-8") for n in ("index.html", "report.html"))
    assert (out / "assets" / "style.css").read_text(encoding="utf-8") == css
    assert "<style>\n/* my theme */" in report and "/* my theme */" not in index  # index links the file
    # the figures come from the theme, the tables, page and script from the default theme
    assert "Fig. 1:" in index and '<span class="fig-num">Figure' not in index
    assert '<span class="fig-num">Table 1.</span>' in index and 'id="contents"' in index
    default_js = (DEFAULT_THEME / "static" / "report.js").read_text(encoding="utf-8")
    assert (out / "assets" / "report.js").read_text(encoding="utf-8") == default_js


# --------------------------------------------------------------------------- a non-editable install

_CHECK = textwrap.dedent("""\
    import sys
    from pathlib import Path

    import dinoreport
    import dinoreport.theme as theme
    from dinoreport.render import render_site
    from sample_page import make_sample_page

    venv = Path(sys.prefix).resolve()
    assert Path(dinoreport.__file__).resolve().is_relative_to(venv), dinoreport.__file__
    assert theme.DEFAULT_THEME.resolve().is_relative_to(venv), theme.DEFAULT_THEME
    for name in theme.TEMPLATE_NAMES + tuple("static/" + s for s in theme.STATIC_NAMES):
        assert (theme.DEFAULT_THEME / name).is_file(), name
    out = Path("site")
    out.mkdir()
    src = Path("src")
    src.mkdir()
    (src / "01.md").write_text("## Hello\\n\\n::: figures kind=within_pca\\n", encoding="utf-8")
    render_site(make_sample_page(out), site_src=src, out=out)
    print(theme.DEFAULT_THEME)
    """)


def test_a_wheel_install_renders_with_its_own_theme(tmp_path):
    """Build a wheel, install it (no dependencies: they come from this environment) into a
    fresh virtual environment, and render from a folder outside the checkout: the package and
    its default theme come from the wheel, and the pages carry the theme's CSS and script."""
    # a copy of what the wheel is built from: setuptools writes build/ and *.egg-info beside it
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("generator", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", str(src), "-w", str(wheels)],
                           capture_output=True, text=True, cwd=tmp_path)
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1:]}")
    wheel, = wheels.glob("dinoreport-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # numpy, jinja2, torch... from this environment, after the venv's own site-packages (a plain
    # path line: this environment's .pth files, an editable dinoreport's among them, are not run)
    here = [p for p in sys.path if p.endswith("site-packages")]
    (site / "zz_deps.pth").write_text("\n".join(here) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(TESTS / "sample_page.py", work / "sample_page.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(python), "-c", _CHECK], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    installed = Path(run.stdout.strip().splitlines()[-1])
    assert installed.name == "_theme" and installed.resolve().is_relative_to(site.resolve())
    out = work / "site"
    for name in STATIC_NAMES:
        shipped = (ROOT / "templates" / "static" / name).read_bytes()
        assert (out / "assets" / name).read_bytes() == shipped, name
    index, report = ((out / n).read_text(encoding="utf-8") for n in ("index.html", "report.html"))
    assert '<link rel="stylesheet" href="assets/style.css">' in index
    css = (ROOT / "templates" / "static" / "style.css").read_text(encoding="utf-8")
    assert css.replace("</style", "<\\/style") in report  # report.html inlines the same stylesheet
    assert 'class="fig kind-within-pca' in index and "Hello" in index
