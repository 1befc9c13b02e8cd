//! Mount helpers for `mini run`'s store view (`store_view`), which runs in
//! a single-threaded helper process and may allocate freely. (The build
//! sandbox plans its mounts ahead instead; see `sandbox`.)

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) fn errno(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}
pub(crate) fn cstring(s: impl AsRef<OsStr>) -> std::result::Result<CString, String> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| format!("'{}' contains a NUL byte", s.as_ref().to_string_lossy()))
}
pub(crate) fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> std::result::Result<(), String> {
    let (src, tgt, fs_type, data_c) = (cstring(source)?, cstring(target)?, cstring(fstype)?, cstring(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            if fstype.is_empty() { std::ptr::null() } else { fs_type.as_ptr() },
            flags,
            if data.is_empty() { std::ptr::null() } else { data_c.as_ptr().cast() },
        )
    };
    if r != 0 {
        return Err(errno(&format!("mounting {} on {}", source.display(), target.display())));
    }
    Ok(())
}
pub(crate) fn bind(source: &Path, target: &Path, read_only: bool) -> std::result::Result<(), String> {
    mount(source, target, "", libc::MS_BIND | libc::MS_REC, "")?;
    if read_only {
        let locked = locked_flags(target)?;
        mount(Path::new(""), target, "", libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked, "")?;
    }
    Ok(())
}
pub(crate) fn locked_flags(path: &Path) -> std::result::Result<libc::c_ulong, String> {
    let c = cstring(path)?;
    // SAFETY: statvfs fills the zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(errno(&format!("statvfs {}", path.display())));
    }
    let mut flags = 0;
    for (vfs, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & vfs != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}
pub(crate) fn enter_root(root: &Path) -> std::result::Result<(), String> {
    let dot = cstring(".")?;
    std::env::set_current_dir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    // SAFETY: pivot_root(".", ".") stacks the old root on the new one, which
    // the detached unmount then removes; both paths are valid C strings.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(errno("pivot_root"));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(errno("unmounting the old root"));
        }
    }
    Ok(())
}
