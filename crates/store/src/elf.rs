//! ELF program headers, as far as mini needs them: whether a binary names
//! a loader (`PT_INTERP`, such as `/lib64/ld-linux-x86-64.so.2`) and
//! where that name is. A build has nothing outside the store, so a program
//! with a loader outside it cannot run there: the flake crate checks the
//! host's busybox is static, and the build crate names such programs when
//! a build fails. Pure: it reads bytes it is given, any class and byte order.

/// The program header type naming the interpreter (the dynamic loader).
pub const PT_INTERP: u32 = 3;

/// What an ELF file's program headers say about its loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// Not an ELF file (a script, data), or one too malformed to read.
    NotElf,
    /// No `PT_INTERP`: a static binary, which needs nothing.
    Static,
    /// The loader's name is `len` bytes at `offset` in the file.
    At { offset: u64, len: u64 },
}

/// Reads the program headers in `head`, the start of a file. Any ELF class
/// and byte order; a header table beyond `head` reads as [`Loader::NotElf`].
pub fn loader(head: &[u8]) -> Loader {
    if head.len() < 52 || &head[..4] != b"\x7fELF" {
        return Loader::NotElf;
    }
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return Loader::NotElf,
    };
    let read = |at: u64, len: usize| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let field = head.get(at..at.checked_add(len)?)?;
        let bytes = field.iter().copied();
        Some(if little {
            bytes.rev().fold(0, |value, byte| (value << 8) | u64::from(byte))
        } else {
            bytes.fold(0, |value, byte| (value << 8) | u64::from(byte))
        })
    };
    // Where e_phoff, e_phentsize and e_phnum are, and in each program
    // header p_offset and p_filesz, with their sizes, per class.
    let (phoff, phentsize, phnum, p_offset, p_filesz, word) = match head[4] {
        1 => (28, 42, 44, 4, 16, 4),
        2 => (32, 54, 56, 8, 32, 8),
        _ => return Loader::NotElf,
    };
    let (Some(table), Some(entry), Some(count)) = (read(phoff, word), read(phentsize, 2), read(phnum, 2)) else {
        return Loader::NotElf;
    };
    for i in 0..count {
        let Some(at) = table.checked_add(i * entry) else { return Loader::NotElf };
        let Some(p_type) = read(at, 4) else { return Loader::NotElf };
        if p_type == u64::from(PT_INTERP) {
            return match (read(at + p_offset, word), read(at + p_filesz, word)) {
                (Some(offset), Some(len)) => Loader::At { offset, len },
                _ => Loader::NotElf,
            };
        }
    }
    Loader::Static
}

/// The loader named by the bytes of a `PT_INTERP` segment: up to the NUL.
pub fn interpreter_name(segment: &[u8]) -> String {
    let end = segment.iter().position(|&b| b == 0).unwrap_or(segment.len());
    String::from_utf8_lossy(&segment[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::elf64;

    /// A 32-bit big-endian ELF header whose one program header is `PT_INTERP`.
    fn elf32_big_endian(offset: u32, len: u32) -> Vec<u8> {
        let mut b = vec![0u8; 52 + 32];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        b[5] = 2;
        b[28..32].copy_from_slice(&52u32.to_be_bytes());
        b[42..44].copy_from_slice(&32u16.to_be_bytes());
        b[44..46].copy_from_slice(&1u16.to_be_bytes());
        b[52..56].copy_from_slice(&PT_INTERP.to_be_bytes());
        b[56..60].copy_from_slice(&offset.to_be_bytes());
        b[68..72].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn the_interpreter_header_gives_the_loader_location() {
        assert_eq!(loader(&elf64(None, 0)), Loader::Static);
        let dynamic = elf64(Some("/lib64/ld-linux-x86-64.so.2"), 0x200);
        assert_eq!(loader(&dynamic), Loader::At { offset: 0x200, len: 28 }, "with its NUL");
        assert_eq!(interpreter_name(&dynamic[0x200..]), "/lib64/ld-linux-x86-64.so.2");
        assert_eq!(loader(&elf32_big_endian(0x154, 19)), Loader::At { offset: 0x154, len: 19 });
    }

    #[test]
    fn anything_else_is_not_elf_and_never_panics() {
        assert_eq!(loader(b"#!/bin/sh\necho hi\n"), Loader::NotElf);
        assert_eq!(loader(b""), Loader::NotElf);
        let mut bad_class = elf64(None, 0);
        bad_class[4] = 9;
        assert_eq!(loader(&bad_class), Loader::NotElf);
        // A program header table past the bytes read, or at an overflowing offset.
        let mut far = elf64(None, 0);
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(loader(&far), Loader::NotElf);
        let mut truncated = elf64(Some("/lib/ld.so"), 0x100);
        truncated.truncate(64 + 60);
        assert_eq!(loader(&truncated), Loader::NotElf);
        // Every prefix of a real header parses to something.
        let full = elf64(Some("/lib/ld.so"), 0x100);
        for len in 0..full.len() {
            let _ = loader(&full[..len]);
        }
        assert_eq!(interpreter_name(b"/lib/ld.so"), "/lib/ld.so", "no NUL: the whole segment");
    }
}
