# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""What users install: ranges, not pins; an import that fails fast on an
incompatible stack; an install into a compatible environment that changes
none of its packages."""
import configparser
import json
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest

from mmdet_samdetr.stack import SUPPORTED, specifier, version_tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(osp.join(ROOT, 'setup.cfg'))
    return cfg


def _install_requires():
    lines = _setup_cfg()['options']['install_requires'].splitlines()
    return [line.strip() for line in lines if line.strip()]


def test_install_requires_are_the_checked_ranges():
    """setup.cfg states exactly the ranges the import checks, and pins
    nothing exactly (exact pins live in requirements/constraints.txt)."""
    requires = _install_requires()
    for name in SUPPORTED:
        assert specifier(name) in requires, (name, requires)
    assert not [r for r in requires if '==' in r], requires
    assert specifier('mmcv') == 'mmcv>=2.1.0,<2.2.0'


def _python_range():
    spec = _setup_cfg()['options']['python_requires']
    low = re.search(r'>=\s*3\.(\d+)', spec)
    high = re.search(r'<\s*3\.(\d+)', spec)
    return int(low.group(1)), int(high.group(1))


def test_python_requires_and_classifiers_agree():
    low, high = _python_range()
    classifiers = _setup_cfg()['metadata']['classifiers']
    listed = sorted(
        int(m) for m in re.findall(r'Python :: 3\.(\d+)', classifiers))
    assert listed == list(range(low, high)), (listed, low, high)


def _stack_pins(name):
    path = osp.join(ROOT, 'requirements', 'stacks', f'{name}.txt')
    with open(path) as f:
        text = f.read()
    pins = dict(re.findall(r'^([a-z-]+)==(\S+)', text, re.M))
    python = re.search(r'^# python: *3\.(\d+)', text, re.M).group(1)
    return pins, int(python)


def test_oldest_stack_tests_the_declared_floors():
    """`make test STACK=oldest` runs the suite on the floors that setup.cfg
    declares: Python, torch, mmcv, mmengine, mmdet."""
    pins, python = _stack_pins('oldest')
    assert python == _python_range()[0]
    for name, (low, _) in SUPPORTED.items():
        # a release of the floor's minor version, at or above the floor
        found, floor = version_tuple(pins[name]), version_tuple(low)
        assert found[:2] == floor[:2] and found >= floor, (name, pins[name])


def test_newest_python_is_tested():
    _, python = _stack_pins('py312')
    assert python == _python_range()[1] - 1


@pytest.mark.parametrize('text, expected', [
    ('2.1.2+cu121', (2, 1, 2)), ('2.13.0a0+git1234', (2, 13, 0)),
    ('2.1.0a0+32f93b1', (2, 1, 0)),
    ('2.2.0rc1', (2, 2, 0)), ('2.1', (2, 1, 0)), ('0.10.7', (0, 10, 7))])
def test_version_tuple(text, expected):
    assert version_tuple(text) == expected


def test_version_tuple_rejects_garbage():
    with pytest.raises(ValueError, match='unknown'):
        version_tuple('unknown')


def _import_with_fakes(tmp_path, fakes):
    """``import mmdet_samdetr`` in a fresh interpreter with fake packages
    (``{module path: source}``) ahead of the installed ones."""
    for name, source in fakes.items():
        path = tmp_path / 'fake' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(tmp_path / 'fake'), ROOT]))
    return subprocess.run([sys.executable, '-c', 'import mmdet_samdetr'],
                          env=env, capture_output=True, text=True,
                          timeout=120)


def _assert_import_error(proc, *parts):
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('ImportError: '), proc.stderr[-2000:]
    for part in parts:
        assert part in last, (part, last)


def test_torch_below_the_floor_fails_at_import(tmp_path):
    proc = _import_with_fakes(
        tmp_path, {'torch/__init__.py': "__version__ = '2.0.1+cu118'\n"})
    _assert_import_error(proc, 'torch>=2.1.0a0', 'found torch 2.0.1+cu118',
                         str(tmp_path / 'fake' / 'torch'))


def test_mmengine_outside_its_range_fails_at_import(tmp_path):
    proc = _import_with_fakes(
        tmp_path, {'mmengine/__init__.py': "__version__ = '0.9.1'\n"})
    _assert_import_error(proc, 'mmengine>=0.10.0,<1.0.0',
                         'found mmengine 0.9.1')


def test_mmcv_2_2_fails_at_import(tmp_path):
    """mmcv 2.2 (refused by mmdet 3.3) is named before mmdet's own
    assertion."""
    proc = _import_with_fakes(
        tmp_path, {'mmcv/__init__.py': "__version__ = '2.2.0'\n"})
    _assert_import_error(proc, 'mmcv>=2.1.0,<2.2.0', 'found mmcv 2.2.0')


def test_mmcv_without_ops_fails_at_import(tmp_path):
    proc = _import_with_fakes(
        tmp_path, {'mmcv/__init__.py': "__version__ = '2.1.0'\n"})
    _assert_import_error(proc, 'compiled ops', 'mmcv 2.1.0',
                         'mmcv>=2.1.0,<2.2.0', 'MMCV_WITH_OPS=1')


def test_mmcv_ops_built_for_another_torch_fail_at_import(tmp_path):
    proc = _import_with_fakes(tmp_path, {
        'mmcv/__init__.py': "__version__ = '2.1.0'\n",
        'mmcv/_ext.py': "raise ImportError('_ext.so: undefined symbol: "
                        "_ZN3c106detail')\n"})
    _assert_import_error(proc, 'do not load with torch', 'undefined symbol',
                         'mmcv 2.1.0')


def test_mmdet_outside_its_range_fails_at_import(tmp_path):
    proc = _import_with_fakes(
        tmp_path, {'mmdet/__init__.py': "__version__ = '3.2.0'\n"})
    _assert_import_error(proc, 'mmdet>=3.3.0,<3.4.0', 'found mmdet 3.2.0')


def test_install_into_a_compatible_environment_changes_nothing(tmp_path):
    """``pip install`` of the package into this environment (which has a
    supported stack) would install the package and nothing else: no torch,
    mmcv, mmdet or mmengine replaced."""
    report = tmp_path / 'report.json'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--dry-run', '--quiet',
         '--no-build-isolation', '--report', str(report), ROOT],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [item['metadata']['name'].lower().replace('_', '-')
             for item in json.loads(report.read_text())['install']]
    assert names == ['mmdet-samdetr'], names


def test_onnx_export_on_a_torch_without_the_exporter_says_so(monkeypatch):
    """The oldest declared torch trains and tests; ONNX export, which needs
    a newer torch, refuses with the version it needs (its tests skip)."""
    import torch

    from mmdet_samdetr.apis import export_onnx
    from mmdet_samdetr.apis.onnx_export import ONNX_EXPORT_MIN_TORCH
    monkeypatch.setattr(torch, '__version__', '2.1.2+cu121')
    with pytest.raises(RuntimeError, match=r'needs torch>=2\.6\.0.*found '
                       r'torch 2\.1\.2\+cu121'):
        export_onnx(None, 'unused.onnx')
    assert ONNX_EXPORT_MIN_TORCH == '2.6.0'


def test_pip_counts_nvidia_container_torch_as_installed():
    """NVIDIA's PyTorch containers ship torch '2.1.0a0+32f93b1'; pip keeps
    an installed version that the specifier contains (pre-releases
    allowed), so install_requires must admit it or pip replaces the
    container's CUDA torch."""
    from pip._vendor.packaging.specifiers import SpecifierSet
    spec = SpecifierSet(specifier('torch')[len('torch'):])
    assert spec.contains('2.1.0a0+32f93b1', prereleases=True)
    assert spec.contains('2.13.0', prereleases=True)
    assert not spec.contains('2.0.1', prereleases=True)
    assert not SpecifierSet('>=2.1').contains('2.1.0a0+32f93b1',
                                              prereleases=True)
