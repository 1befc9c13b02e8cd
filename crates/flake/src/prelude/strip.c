/*
 * strip: removes debug information (-S, -g, -d, --strip-debug) or also the
 * symbol table (-s, --strip-all, the default) from 64-bit little-endian ELF
 * files, in place. mini's prelude builds it with zig's C compiler because
 * zig's own objcopy cannot strip ELF files yet; it is what the generic
 * builder's fixup phase runs.
 *
 * Only sections that are not loaded (no SHF_ALLOC) are removed, so the
 * program's image is left byte for byte: the file keeps everything up to
 * the end of its last loaded part, then the kept unloaded sections and a
 * new section header table. Symbols that pointed into a removed section
 * become absolute. Other files are refused with a message and left alone.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    unsigned char ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
} Ehdr;

typedef struct {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
} Phdr;

typedef struct {
    uint32_t name, type;
    uint64_t flags, addr, offset, size;
    uint32_t link, info;
    uint64_t addralign, entsize;
} Shdr;

typedef struct {
    uint32_t name;
    unsigned char info, other;
    uint16_t shndx;
    uint64_t value, size;
} Sym;

#define SHF_ALLOC 0x2
#define SHF_INFO_LINK 0x40
#define SHT_NOBITS 8
#define SHT_SYMTAB 2
#define SHT_RELA 4
#define SHT_REL 9
#define SHN_LORESERVE 0xff00
#define SHN_ABS 0xfff1

static const char *program = "strip";

static int fail(const char *file, const char *why) {
    fprintf(stderr, "%s: %s: %s\n", program, file, why);
    return 1;
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether the section named `name` goes, for this mode. */
static int removed(const Shdr *sh, const char *name, int all) {
    if (sh->flags & SHF_ALLOC)
        return 0;
    if (starts_with(name, ".debug") || starts_with(name, ".zdebug") || starts_with(name, ".stab") ||
        strcmp(name, ".line") == 0)
        return 1;
    return all && (sh->type == SHT_SYMTAB || strcmp(name, ".strtab") == 0);
}

static int strip_file(const char *path, int all) {
    FILE *in = fopen(path, "rb");
    if (!in)
        return fail(path, strerror(errno));
    struct stat st;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(in);
        return fail(path, "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    unsigned char *data = malloc(size ? size : 1);
    if (!data || fread(data, 1, size, in) != size) {
        fclose(in);
        free(data);
        return fail(path, "cannot read it");
    }
    fclose(in);

    Ehdr eh;
    if (size < sizeof eh || memcmp(data, "\177ELF", 4) != 0) {
        free(data);
        return fail(path, "not an ELF file");
    }
    memcpy(&eh, data, sizeof eh);
    if (eh.ident[4] != 2 || eh.ident[5] != 1) {
        free(data);
        return fail(path, "only 64-bit little-endian ELF files are supported; left as it is");
    }
    if (eh.shnum == 0 || eh.shentsize != sizeof(Shdr) || eh.shoff > size ||
        (uint64_t)eh.shnum * sizeof(Shdr) > size - eh.shoff || eh.shstrndx >= eh.shnum ||
        (eh.phnum && (eh.phentsize != sizeof(Phdr) || eh.phoff > size ||
                      (uint64_t)eh.phnum * sizeof(Phdr) > size - eh.phoff))) {
        free(data);
        return fail(path, "malformed ELF headers");
    }
    Shdr *sh = malloc(eh.shnum * sizeof(Shdr));
    int *map = malloc(eh.shnum * sizeof(int));
    if (!sh || !map) {
        free(data);
        return fail(path, "out of memory");
    }
    memcpy(sh, data + eh.shoff, eh.shnum * sizeof(Shdr));
    const Shdr *names = &sh[eh.shstrndx];
    if (names->offset > size || names->size > size - names->offset || names->size == 0 ||
        data[names->offset + names->size - 1] != 0) {
        free(data);
        return fail(path, "malformed section names");
    }

    /* The part kept as it is: headers, segments and loaded sections. */
    uint64_t keep = sizeof eh;
    if (eh.phnum && eh.phoff + eh.phnum * sizeof(Phdr) > keep)
        keep = eh.phoff + eh.phnum * sizeof(Phdr);
    for (int i = 0; i < eh.phnum; i++) {
        Phdr ph;
        memcpy(&ph, data + eh.phoff + i * sizeof ph, sizeof ph);
        if (ph.offset <= size && ph.filesz <= size - ph.offset && ph.offset + ph.filesz > keep)
            keep = ph.offset + ph.filesz;
    }
    int gone = 0;
    for (int i = 0; i < eh.shnum; i++) {
        const char *name = sh[i].name < names->size ? (const char *)data + names->offset + sh[i].name : "";
        int drop = i != 0 && i != eh.shstrndx && removed(&sh[i], name, all);
        map[i] = drop ? -1 : i - gone;
        gone += drop;
        if (sh[i].type != SHT_NOBITS && (sh[i].offset > size || sh[i].size > size - sh[i].offset)) {
            free(data);
            return fail(path, "a section lies outside the file");
        }
        if ((sh[i].flags & SHF_ALLOC) && sh[i].type != SHT_NOBITS && sh[i].offset + sh[i].size > keep)
            keep = sh[i].offset + sh[i].size;
    }
    /* Relocations of a removed section go with it. */
    for (int i = 1; i < eh.shnum; i++) {
        if ((sh[i].type == SHT_REL || sh[i].type == SHT_RELA) && sh[i].info < eh.shnum && map[sh[i].info] < 0 &&
            (sh[i].flags & SHF_INFO_LINK) && !(sh[i].flags & SHF_ALLOC) && map[i] >= 0) {
            map[i] = -1;
            for (int j = i + 1; j < eh.shnum; j++)
                if (map[j] >= 0)
                    map[j]--;
            gone++;
        }
    }
    if (gone == 0) {
        free(data);
        return 0;
    }

    size_t cap = size + 64;
    unsigned char *out = malloc(cap);
    if (!out) {
        free(data);
        return fail(path, "out of memory");
    }
    memcpy(out, data, keep);
    uint64_t end = keep;
    int kept = 0;
    for (int i = 0; i < eh.shnum; i++) {
        if (map[i] < 0)
            continue;
        Shdr s = sh[i];
        if (s.link < eh.shnum)
            s.link = map[s.link] < 0 ? 0 : (uint32_t)map[s.link];
        if ((s.flags & SHF_INFO_LINK) && s.info < eh.shnum && map[s.info] >= 0)
            s.info = (uint32_t)map[s.info];
        if (i != 0 && !(s.flags & SHF_ALLOC) && s.type != SHT_NOBITS && s.offset >= keep) {
            uint64_t align = s.addralign > 1 ? s.addralign : 1;
            end = (end + align - 1) / align * align;
            memcpy(out + end, data + sh[i].offset, s.size);
            if (s.type == SHT_SYMTAB && s.entsize == sizeof(Sym)) {
                for (uint64_t off = 0; off + sizeof(Sym) <= s.size; off += sizeof(Sym)) {
                    Sym sym;
                    memcpy(&sym, out + end + off, sizeof sym);
                    if (sym.shndx != 0 && sym.shndx < SHN_LORESERVE) {
                        int target = sym.shndx < eh.shnum ? map[sym.shndx] : -1;
                        sym.shndx = target < 0 ? SHN_ABS : (uint16_t)target;
                        memcpy(out + end + off, &sym, sizeof sym);
                    }
                }
            }
            s.offset = end;
            end += s.size;
        }
        sh[kept++] = s;
    }
    end = (end + 7) / 8 * 8;
    if (end + kept * sizeof(Shdr) > cap) {
        free(data);
        free(out);
        return fail(path, "the stripped file would be larger than the original");
    }
    memcpy(out + end, sh, kept * sizeof(Shdr));
    eh.shoff = end;
    eh.shnum = (uint16_t)kept;
    eh.shstrndx = (uint16_t)map[eh.shstrndx];
    memcpy(out, &eh, sizeof eh);
    end += kept * sizeof(Shdr);

    char *tmp = malloc(strlen(path) + 16);
    if (!tmp) {
        free(data);
        free(out);
        return fail(path, "out of memory");
    }
    sprintf(tmp, "%s.stripping", path);
    FILE *o = fopen(tmp, "wb");
    int ok = o && fwrite(out, 1, end, o) == end;
    ok = o && fclose(o) == 0 && ok;
    ok = ok && chmod(tmp, st.st_mode & 07777) == 0 && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    free(data);
    free(out);
    free(sh);
    free(map);
    return ok ? 0 : fail(path, "cannot write the stripped file");
}

int main(int argc, char **argv) {
    int all = 1, status = 0, files = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-S") || !strcmp(a, "-g") || !strcmp(a, "-d") || !strcmp(a, "--strip-debug"))
            all = 0;
        else if (!strcmp(a, "-s") || !strcmp(a, "--strip-all"))
            all = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "%s: unsupported option '%s' (this strip takes -S, -g, -d, --strip-debug, -s, --strip-all)\n",
                    program, a);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        files++;
        status |= strip_file(argv[i], all);
    }
    if (!files) {
        fprintf(stderr, "usage: %s [-S|-s] FILE...\n", program);
        return 2;
    }
    return status;
}
