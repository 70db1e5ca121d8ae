# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The documentation: the MkDocs site builds strictly, the README's links
resolve, and LICENSE and CITATION.cff are in place."""
import os
import os.path as osp
import re
import subprocess
import sys

import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _read(name):
    with open(osp.join(ROOT, name), encoding='utf-8') as f:
        return f.read()


def test_mkdocs_build_strict(tmp_path):
    """``mkdocs build --strict``: any warning fails, a broken link or
    anchor, a page missing from the nav, a docstring the API reference
    cannot render. mkdocs is a dependency (the ``docs`` extra that
    ``make install`` installs), so its absence fails too."""
    import mkdocs  # noqa: F401  (ImportError: install the `docs` extra)
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--config-file',
         osp.join(ROOT, 'mkdocs.yml'), '--site-dir', str(tmp_path / 'site')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / 'site'
    for page in ('index.html', 'api/models/index.html',
                 'api/engine/index.html', 'api/apis/index.html'):
        assert (site / page).is_file(), page
    # the API reference is generated from the docstrings
    api = (site / 'api/models/index.html').read_text(encoding='utf-8')
    assert 'SemanticsAligner' in api and 'SAMDETRPlusPlus' in api


def test_readme_is_short_and_its_links_resolve():
    readme = _read('README.md')
    assert len(readme.splitlines()) <= 200
    assert 'make demo' in readme and 'make test' in readme
    assert 'Segment Anything' in readme
    links = re.findall(r'\]\(([^)\s]+)\)', readme)
    local = [link for link in links if '://' not in link]
    assert local, 'the README links to its documentation'
    for link in local:
        path, _, anchor = link.partition('#')
        assert osp.exists(osp.join(ROOT, path)), f'README links to {link}'
        if anchor and path.endswith('.md'):
            headings = re.findall(r'^#+ (.+)$', _read(path), flags=re.M)
            slugs = {re.sub(r'[^\w\- ]', '', h).strip().lower()
                     .replace(' ', '-') for h in headings}
            assert anchor in slugs, f'README links to {link}'


def test_docs_name_no_commit():
    """Figures name their command and the package version, not a
    commit."""
    texts = {'README.md': _read('README.md')}
    for folder, _, files in os.walk(osp.join(ROOT, 'docs')):
        for name in files:
            if name.endswith('.md'):
                path = osp.join(folder, name)
                texts[osp.relpath(path, ROOT)] = _read(path)
    # a hexadecimal run of 7-40 characters with a digit and a letter
    commit = re.compile(r'\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])'
                        r'[0-9a-f]{7,40}\b')
    for name, text in texts.items():
        assert not commit.search(text), (name, commit.search(text))


def test_every_picture_is_shown():
    images = osp.join(ROOT, 'docs', 'images')
    pages = ''.join(
        _read(osp.join(folder, name))
        for folder, _, files in os.walk(osp.join(ROOT, 'docs'))
        for name in files if name.endswith('.md'))
    for name in os.listdir(images):
        assert f'images/{name}' in pages, f'docs/images/{name} is unused'


def test_license_and_citation():
    license_text = _read('LICENSE')
    assert 'Apache License' in license_text
    assert 'Version 2.0, January 2004' in license_text
    assert 'END OF TERMS AND CONDITIONS' in license_text
    citation = yaml.safe_load(_read('CITATION.cff'))
    assert citation['cff-version'] == '1.2.0'
    assert citation['type'] == 'software'
    assert citation['license'] == 'Apache-2.0'
    version = re.search(r"__version__ = '([^']+)'",
                        _read('mmdet_samdetr/__init__.py')).group(1)
    assert str(citation['version']) == version
    papers = [citation['preferred-citation']] + citation['references']
    urls = {paper['url'] for paper in papers}
    assert urls == {
        'https://arxiv.org/abs/2203.06883', 'https://arxiv.org/abs/2207.14172',
        'https://arxiv.org/abs/2304.07527'
    }
