"""Packaging for batchbald_nb, driven by nbdev's settings.ini.

nbdev's own setup.py template imports `pkg_resources`, which current setuptools no longer ships;
this one reads settings.ini with the standard library only.
"""
from configparser import ConfigParser

import setuptools

config = ConfigParser(delimiters=["="])
config.read("settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

licenses = {"apache2": "Apache-2.0"}  # SPDX expressions (license classifiers are deprecated in setuptools)
statuses = ["Planning", "Pre-Alpha", "Alpha", "Beta", "Production/Stable", "Mature", "Inactive"]
lic = licenses[cfg["license"]]
min_python = cfg["min_python"]
requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
extras = {"dev": dev_requirements}
for key in cfg:
    if key.startswith("extra_requirements_"):
        extras[key.removeprefix("extra_requirements_")] = cfg[key].split()
console_scripts = [s for s in cfg.get("console_scripts", "").split() if s]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license=lic,
    license_files=["LICENSE"],  # the Apache-2.0 text, in the wheel's .dist-info and the sdist (tests/test_wheel.py)
    classifiers=[
        "Development Status :: " + str(cfg["status"]) + " - " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "Natural Language :: " + cfg["language"].title(),
        "Programming Language :: Python :: 3",
    ],
    url=cfg["git_url"],
    # batchbald_nb/reference holds data, not code, but setuptools sees a (namespace) package there, so name it as one.
    packages=setuptools.find_namespace_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".reference"]),
    include_package_data=True,
    package_data={cfg["lib_name"] + ".reference": ["*"]},  # the paper's own results (tools/extract_paper_runs.py)
    install_requires=requirements,
    extras_require=extras,
    python_requires=">=" + min_python,
    zip_safe=False,
    entry_points={"console_scripts": console_scripts, "nbdev": [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"]},
)
