"""Start the Pulumi Python exec shim with the stack's config read from a pipe.

Pulumi hands a Python program its config in one environment variable,
``PULUMI_CONFIG`` (JSON). Linux refuses to start a process when one variable
is longer than 128 KiB (``MAX_ARG_STRLEN``): ``fork/exec python: argument
list too long`` (pulumi/pulumi#8680, open upstream). A stack whose spec lives
in its config passes that at about 65 services. Our language host
(``main.go`` beside this file) writes the config into a pipe instead and
starts ``python -u config_pipe.py <exec shim> <args>``; this reads the pipe
named by ``TRADEPULSE_PULUMI_CONFIG_FD`` to its end, puts the JSON where the
SDK reads it (``os.environ["PULUMI_CONFIG"]``, inside this process only) and
runs the shim as ``__main__``. The config holds decrypted secrets: a pipe
keeps them out of files and out of the environment other processes can read.
"""

import os
import runpy
import sys

FD_VARIABLE = "TRADEPULSE_PULUMI_CONFIG_FD"


def main() -> None:
    """Read the config pipe (if the host gave one), then run the shim with its arguments."""
    fd = os.environ.pop(FD_VARIABLE, None)
    if fd is not None:
        with os.fdopen(int(fd), encoding="utf-8") as pipe:
            config = pipe.read()
        if config:  # empty: the host had none to give (the SDK reads no variable as {})
            os.environ["PULUMI_CONFIG"] = config
    shim = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(shim, run_name="__main__")


if __name__ == "__main__":
    main()
