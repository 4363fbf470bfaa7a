//! Host tests of the call-site scan: synthetic modules and Debian's real symbol lists.
use super::*;

#[test]
fn build_id_note_is_parsed() {
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_ne_bytes());
    note.extend_from_slice(&3u32.to_ne_bytes());
    note.extend_from_slice(&1u32.to_ne_bytes()); // another note type first
    note.extend_from_slice(b"Linu");
    note.extend_from_slice(&[1, 2, 3, 0]);
    note.extend_from_slice(&4u32.to_ne_bytes());
    note.extend_from_slice(&20u32.to_ne_bytes());
    note.extend_from_slice(&3u32.to_ne_bytes());
    note.extend_from_slice(b"GNU\0");
    note.extend_from_slice(&[0xab; 20]);
    assert_eq!(parse_build_id_note(&note), Some(vec![0xab; 20]));
    assert_eq!(parse_build_id_note(&note[..30]), None);
    assert_eq!(parse_build_id_note(&[]), None);
}

#[test]
fn modules_dep_lines_give_module_paths() {
    let root = Path::new("/lib/modules/r");
    let dep = "kernel/drivers/gpu/drm/ttm/ttm.ko.xz: kernel/drivers/gpu/drm/drm.ko.xz\n\
               /abs/extra/ttm.ko:\n\
               \n\
               kernel/drivers/gpu/drm/drm.ko.xz:\n";
    assert_eq!(
        modules_dep_paths(dep, root),
        vec![
            PathBuf::from("/lib/modules/r/kernel/drivers/gpu/drm/ttm/ttm.ko.xz"),
            PathBuf::from("/abs/extra/ttm.ko"),
            PathBuf::from("/lib/modules/r/kernel/drivers/gpu/drm/drm.ko.xz"),
        ]
    );
}

#[test]
fn candidates_match_names_with_dashes_and_compression() {
    let given = vec![
        PathBuf::from("/x/ttm.ko.xz"),
        PathBuf::from("/x/ttmx.ko"),
        PathBuf::from("/x/drm_ttm_helper.ko"),
    ];
    let c = candidates("ttm", "no-such-release", &given);
    assert_eq!(c, vec![PathBuf::from("/x/ttm.ko.xz")]);
    let c = candidates("drm-ttm-helper", "no-such-release", &given);
    assert_eq!(c, vec![PathBuf::from("/x/drm_ttm_helper.ko")]);
}

/// A relocatable x86-64 object like a module: `reserve` calls the trylock, up_read and
/// the lock; `handler` calls up_read; `other` calls up_read too but is not probed; one
/// relocation in `reserve` is a tail call (jmp), not a call.
fn module_object() -> Vec<u8> {
    use Insn::*;
    object_of(&[
        (
            "reserve",
            &[
                Bytes(&[0x90]),
                Call(TRYLOCK),
                Bytes(&[0x85, 0xc0]),
                Call(UP_READ),
                Call(LOCKS[0]),
                Jmp(UP_READ),
            ],
        ),
        ("handler", &[Call(UP_READ), Bytes(&[0xc3])]),
        ("other", &[Call(UP_READ)]),
    ])
}

#[test]
fn finds_calls_and_their_returns_in_probed_functions_only() -> Result<()> {
    let elf = module_object();
    let functions = BTreeMap::from([
        ("reserve".to_string(), FunctionKind::Reserve),
        ("handler".to_string(), FunctionKind::Handler),
    ]);
    let sites = scan(&elf, &functions)?;
    let got = placed(&sites);
    assert_eq!(
        got,
        vec![
            ("handler", 0, SiteRole::UnlockInHandler),
            // call at 1, returns to 6: the trylock result is read at 6.
            ("reserve", 6, SiteRole::TrylockReturn),
            ("reserve", 8, SiteRole::UnlockInReserve),
            ("reserve", 13, SiteRole::LockCall),
            ("reserve", 18, SiteRole::LockReturn),
        ]
    );
    Ok(())
}

#[test]
fn a_decoded_trylock_test_is_probed_on_its_two_paths() -> Result<()> {
    use Insn::*;
    // call trylock (0..5); test %eax,%eax (5); je +5 (7) -> 14; mov 0x188(%rbx),%rax (9..16):
    // the acquired path starts at 9, the contended one at 14.
    let elf = object_of(&[(
        "reserve",
        &[
            Call(TRYLOCK),
            Bytes(&[0x85, 0xc0, 0x74, 0x05]),
            Bytes(&[0x48, 0x8b, 0x83, 0x88, 0x01, 0x00, 0x00]),
            Bytes(&[0x90; 8]),
        ],
    )]);
    let functions = BTreeMap::from([("reserve".to_string(), FunctionKind::Reserve)]);
    let sites = scan(&elf, &functions)?;
    assert_eq!(
        placed(&sites),
        vec![
            ("reserve", 9, SiteRole::TrylockAcquired),
            ("reserve", 14, SiteRole::TrylockFailed)
        ]
    );
    Ok(())
}

/// Where each site is and what it observes.
fn placed(sites: &[Site]) -> Vec<(&str, u64, SiteRole)> {
    sites
        .iter()
        .map(|s| (s.function.as_str(), s.offset, s.role))
        .collect()
}

/// One instruction of a test function: `call rel32` or `jmp rel32` to an external
/// symbol (with its PLT32 relocation), or raw bytes.
enum Insn<'a> {
    Call(&'a str),
    Jmp(&'a str),
    Bytes(&'a [u8]),
}

/// A relocatable x86-64 object like a module, its functions made of `Insn`s in order,
/// each starting at a multiple of 16.
fn object_of(functions: &[(&str, &[Insn])]) -> Vec<u8> {
    use object::write::{Object as W, Relocation, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolKind, SymbolScope};
    let mut o = W::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = o.add_section(Vec::new(), b".text".to_vec(), object::SectionKind::Text);
    let mut code = Vec::new();
    let mut relocs = Vec::new();
    let mut symbols = Vec::new();
    for (name, insns) in functions {
        while code.len() % 16 != 0 {
            code.push(0xcc);
        }
        let start = code.len() as u64;
        for insn in *insns {
            let (op, callee) = match insn {
                Insn::Call(c) => (CALL_REL32, *c),
                Insn::Jmp(c) => (0xe9, *c),
                Insn::Bytes(b) => {
                    code.extend_from_slice(b);
                    continue;
                }
            };
            code.push(op);
            relocs.push((code.len() as u64, callee));
            code.extend_from_slice(&[0; 4]);
        }
        symbols.push((*name, start, code.len() as u64 - start));
    }
    o.append_section_data(text, &code, 16);
    for (name, value, size) in symbols {
        o.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value,
            size,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
    }
    let mut externs = BTreeMap::new();
    for (at, callee) in relocs {
        let sym = *externs.entry(callee).or_insert_with(|| {
            o.add_symbol(Symbol {
                name: callee.as_bytes().to_vec(),
                value: 0,
                size: 0,
                kind: SymbolKind::Text,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Undefined,
                flags: SymbolFlags::None,
            })
        });
        o.add_relocation(
            text,
            Relocation {
                offset: at,
                symbol: sym,
                addend: -4,
                flags: RelocationFlags::Elf {
                    r_type: R_X86_64_PLT32,
                },
            },
        )
        .expect("relocation");
    }
    o.write().expect("ELF")
}

/// xe 6.18+ (checked against Debian 7.2.13's xe.ko): the trylock is in the fastpath
/// (twice), the mmap_lock drop and the drm_exec wait in xe_bo_cpu_fault; calls to other
/// functions are not probed.
#[test]
fn xe_sites_are_its_trylock_drop_and_drm_exec_wait() -> Result<()> {
    use Insn::Call;
    let elf = object_of(&[
        (
            XE_FASTPATH,
            &[
                Call("xe_validation_ctx_init"),
                Call(TRYLOCK),
                Call("ww_mutex_unlock"),
                Call(TRYLOCK),
            ],
        ),
        (
            XE_FAULT,
            &[
                Call("drm_dev_enter"),
                Call(EXEC_LOCK),
                Call("xe_bo_put"),
                Call(UP_READ),
            ],
        ),
    ]);
    let plan = AttachPlan {
        fault_handlers: vec![
            ("ttm_bo_vm_fault".into(), "ttm".into()),
            (XE_FAULT.into(), "xe".into()),
        ],
        reserve: Some("ttm_bo_vm_reserve".into()),
        access: None,
        trylock: Some(TRYLOCK.into()),
        resv_lock: vec![LOCKS[0].into()],
        read_unlock: UP_READ.into(),
        contention: crate::discovery::ContentionSource::Tracepoints,
        thread_exit: Some("exit_files".into()),
    };
    let functions = functions_of(&plan);
    let xe = functions.get("xe").expect("xe's functions are probed");
    assert_eq!(xe.get(XE_FAULT), Some(&FunctionKind::XeFault));
    assert_eq!(xe.get(XE_FASTPATH), Some(&FunctionKind::XeFastpath));
    assert!(functions["ttm"].contains_key("ttm_bo_vm_reserve"));
    let sites = scan(&elf, xe)?;
    let got = placed(&sites);
    assert_eq!(
        got,
        vec![
            // drm_exec_lock_obj called at 5, returns to 10.
            (XE_FAULT, 5, SiteRole::ExecLockCall),
            (XE_FAULT, 10, SiteRole::LockReturn),
            (XE_FAULT, 15, SiteRole::UnlockInReserve),
            (XE_FASTPATH, 10, SiteRole::TrylockReturn),
            (XE_FASTPATH, 20, SiteRole::TrylockReturn),
        ]
    );
    Ok(())
}

#[test]
fn not_an_elf_is_an_error() {
    assert!(scan(b"not elf", &BTreeMap::new()).is_err());
}
