"""Turn a staged site-packages directory into a reproducible, pure-Python cisfix.pyz (called by build.sh).

    python pyz.py SITE_PACKAGES SOURCE_DIR LAUNCHER OUTPUT      (with SOURCE_DATE_EPOCH set)

1. Tidy the staged site-packages: drop bin/ (console scripts carry the build interpreter's absolute
   path in their shebang, and the archive runs cisfix through its entry point, not through them)
   and their RECORD lines, whose hashes cover those shebangs.
2. Check that every file of the cisfix sources made it into the staged package (a data file that
   pyproject.toml does not declare as package data would otherwise be silently missing).
3. Run shiv (its bootstrap, environment.json with --compile-pyc, the build id).
4. Rewrite the archive deterministically: entries sorted by name, one timestamp (SOURCE_DATE_EPOCH),
   fixed permissions, fixed compression, and build/launcher.py as __main__.py (and as
   _cisfix_launcher.py), build/pyz_import.py as cis_k8s_unified.py: the older runner's import with
   only the archive on PYTHONPATH. shiv 1.0.8 stores its _bootstrap files in directory order and with
   the permissions they have on disk.
5. Refuse any compiled code in the result: an extension module would tie it to one CPU and one
   CPython, so the build fails instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SHEBANG = "/usr/bin/env python3"
ENTRY_POINT = "cisfix.cli:main"
COMPILED_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")
# ELF (Linux .so), PE/COFF (Windows .pyd/.dll) and Mach-O (macOS) magic numbers.
BINARY_MAGICS = (b"\x7fELF", b"MZ", b"\xfe\xed\xfa", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe")


def fail(message: str) -> None:
    sys.exit(f"pyz.py: {message}")


def tidy_site_packages(site_packages: Path) -> None:
    shutil.rmtree(site_packages / "bin", ignore_errors=True)
    for record in site_packages.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        # With pip --target, RECORD names scripts relative to the dist-info's parent: "../../bin/x"
        # or "bin/x" depending on the pip version; both go.
        kept = [line for line in lines if not line.split(",", 1)[0].lstrip("./").startswith("bin/")]
        record.write_text("".join(kept))
    leftovers = sorted(str(p.relative_to(site_packages)) for p in site_packages.rglob("direct_url.json"))
    if leftovers:
        # pip writes direct_url.json (with an absolute path) only for a path or URL requirement;
        # build.sh installs by name from --find-links so that it never does.
        fail(f"build-path metadata in the archive: {leftovers}")


def check_package_complete(site_packages: Path, source: Path) -> None:
    missing = [
        str(path.relative_to(source))
        for path in sorted((source / "cisfix").rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and not (site_packages / path.relative_to(source)).is_file()
    ]
    if missing:
        fail(f"files of the package missing from the archive (declare them as package data): {missing}")


def run_shiv(site_packages: Path, output: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "shiv",
            "--site-packages", str(site_packages),
            "--entry-point", ENTRY_POINT,
            "--python", SHEBANG,
            "--output-file", str(output),
            # Compile the extracted site-packages once, at first run: every later start is warm.
            "--compile-pyc",
            "--reproducible",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def compiled_code(name: str, data: bytes) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(COMPILED_SUFFIXES) or ".so." in base or data.startswith(BINARY_MAGICS)


def normalise(shiv_output: Path, launcher: Path, output: Path, epoch: int) -> None:
    # Zip timestamps have no time zone and start in 1980: clamp, as shiv and pip do.
    date_time = time.gmtime(max(epoch, 315532800))[:6]
    with zipfile.ZipFile(shiv_output) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    entries["__main__.py"] = entries["_cisfix_launcher.py"] = launcher.read_bytes()
    entries["cis_k8s_unified.py"] = (launcher.parent / "pyz_import.py").read_bytes()

    compiled = sorted(name for name, data in entries.items() if compiled_code(name, data))
    if compiled:
        fail(f"compiled code would make the archive platform-specific: {compiled}")

    with output.open("wb") as fd:
        fd.write(f"#!{SHEBANG}\n".encode())
        with zipfile.ZipFile(fd, "w") as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=date_time)
                info.create_system = 3  # Unix, so external_attr carries the mode below
                # shiv restores these modes when it extracts: read-only for everyone but the owner.
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, entries[name], compresslevel=9)
    output.chmod(0o755)


def main() -> None:
    site_packages, source, launcher, output = (Path(arg).resolve() for arg in sys.argv[1:5])
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    tidy_site_packages(site_packages)
    check_package_complete(site_packages, source)
    with tempfile.TemporaryDirectory() as tmp:
        shiv_output = Path(tmp, "shiv.pyz")
        run_shiv(site_packages, shiv_output)
        normalise(shiv_output, launcher, output, epoch)


if __name__ == "__main__":
    main()
