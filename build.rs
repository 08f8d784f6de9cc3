//! Assembles the knobs file `src/config.rs` reads, from up to four layers
//! (each later one overrides single keys of the ones before):
//!
//! 1. `configs/default.toml`, which names every knob and its type;
//! 2. the platform's defaults, `configs/platforms/<platform>.toml`, when the
//!    kernel's axconfig (`AX_CONFIG_PATH`) names a platform that has one;
//! 3. the file named by `BUDDY_SLAB_CONFIG`, in the same layout;
//! 4. the kernel's own axconfig tables: `[buddy-slab]` for the top-level
//!    knobs and `[buddy-slab-<table>]` for those of `[<table>]` (axconfig has
//!    no nested tables), merged into the kernel's config by axconfig-gen like
//!    any other table.
//!
//! A key that names no knob, or a value of another type, fails the build:
//! a misspelt knob must not be ignored silently.
use axconfig_gen::Config;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Prefix of the kernel config's tables that hold this crate's knobs.
const KERNEL_TABLE: &str = "buddy-slab";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=BUDDY_SLAB_CONFIG");
    println!("cargo:rerun-if-env-changed=AX_CONFIG_PATH");
    let mut knobs = read(&manifest_dir.join("configs/default.toml"));
    let same_table = |table: &str| Some(table.to_owned());

    let kernel_file = env::var_os("AX_CONFIG_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let kernel = kernel_file.as_deref().map(read);
    let platform = kernel.as_ref().and_then(|k| {
        let item = k.config_at(Config::GLOBAL_TABLE_NAME, "platform")?;
        Some(item.value().to_toml_value().trim_matches('"').to_owned())
    });
    if let Some(platform) = platform {
        let dir = manifest_dir.join("configs/platforms");
        println!("cargo:rerun-if-changed={}", dir.display());
        let file = dir.join(format!("{platform}.toml"));
        if file.exists() {
            apply(&mut knobs, &read(&file), &file, same_table);
        }
    }
    if let Some(file) = env::var_os("BUDDY_SLAB_CONFIG").map(PathBuf::from) {
        apply(&mut knobs, &read(&file), &file, same_table);
    }
    if let (Some(kernel), Some(file)) = (&kernel, &kernel_file) {
        apply(&mut knobs, kernel, file, kernel_table_to_crate_table);
    }

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("knobs.toml");
    let toml = knobs
        .dump_toml()
        .unwrap_or_else(|e| fail(&out, &format!("{e:?}")));
    if fs::read_to_string(&out).ok().as_deref() != Some(toml.as_str()) {
        fs::write(&out, toml).unwrap_or_else(|e| fail(&out, &e.to_string()));
    }
    println!("cargo:rustc-env=BUDDY_SLAB_KNOBS={}", out.display());
}

/// The crate file's table that a kernel config table overrides, if any.
fn kernel_table_to_crate_table(table: &str) -> Option<String> {
    if table == KERNEL_TABLE {
        return Some(Config::GLOBAL_TABLE_NAME.to_owned());
    }
    let rest = table.strip_prefix(KERNEL_TABLE)?.strip_prefix('-')?;
    Some(rest.to_owned())
}

/// Overrides `knobs` with every item of `layer` whose table `map` selects.
fn apply(
    knobs: &mut Config,
    layer: &Config,
    layer_file: &Path,
    map: impl Fn(&str) -> Option<String>,
) {
    for (table, items, _) in layer.table_iter() {
        let Some(target) = map(table) else { continue };
        for item in items.values() {
            let shown = item.item_name();
            let Some(knob) = knobs.config_at_mut(&target, item.key()) else {
                fail(
                    layer_file,
                    &format!("`{shown}` is not a buddy-slab-allocator knob"),
                );
            };
            if let Err(e) = knob.value_mut().update(item.value().clone()) {
                fail(
                    layer_file,
                    &format!("`{shown}`: {e:?} (knob type: {:?})", knob.value().ty()),
                );
            }
        }
    }
}

fn read(path: &Path) -> Config {
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(path).unwrap_or_else(|e| fail(path, &e.to_string()));
    Config::from_toml(&text).unwrap_or_else(|e| fail(path, &format!("{e:?}")))
}

fn fail(path: &Path, why: &str) -> ! {
    eprintln!("buddy-slab-allocator config: {}: {why}", path.display());
    std::process::exit(1);
}
