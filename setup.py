"""Install minit2t: `pip install -e .` (add ".[test]" for the test suite)."""
from setuptools import find_packages, setup

setup(
    name="minit2t",
    version="0.1.0",
    description="An educational reference implementation of T2T-ViT in NumPy and C",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minit2t", "minit2t.*"]),
    package_data={"minit2t": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=["numpy>=1.22"],
    extras_require={
        "test": ["pytest", "hypothesis", "torch==2.13.0"],
    },
    entry_points={"console_scripts": ["minit2t=minit2t.__main__:main"]},
)
