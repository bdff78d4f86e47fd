"""KernelError carries the kernel's errno; InputError names the place."""

from __future__ import annotations

import errno

from socmem.errors import InputError, InputErrors, KernelError, errno_name


def test_kernel_error_is_oserror_with_errno() -> None:
    e = KernelError(-errno.ENOMEM, "swiotlb buffer is full")
    assert isinstance(e, OSError)
    assert e.errno == errno.ENOMEM
    assert e.name == "ENOMEM"
    assert str(e) == "[ENOMEM] swiotlb buffer is full"
    assert KernelError(errno.EINVAL).strerror  # default text from strerror
    assert errno_name(-16) == "EBUSY"


def test_input_error_render() -> None:
    e = InputError("unknown field 'foo'", where="soc.yaml:12", field="masters[3].foo")
    assert e.render() == "soc.yaml:12: masters[3].foo: unknown field 'foo'"
    many = InputErrors([e, InputError("bad", where="soc.yaml:14", expected="a size")])
    assert many.render().splitlines() == [
        "soc.yaml:12: masters[3].foo: unknown field 'foo'",
        "soc.yaml:14: bad (expected a size)",
    ]
