"""Build hook for the optional native Milenage kernel; everything else is in pyproject.toml.

The kernel links OpenSSL's libcrypto (libssl-dev). If it cannot be built, trelab installs
without it and ``aka.native`` falls back to the pure-Python kernel.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # a missing compiler must not block install
            print(f"warning: native Milenage kernel not built ({exc}); pure Python is used")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"warning: {ext.name} not built ({exc}); pure Python is used")


setup(
    ext_modules=[
        Extension(
            "aka._milenage_native",
            ["aka/_milenage_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall"],
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
