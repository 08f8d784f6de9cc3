//! Rebuild when the selected configuration file changes.
fn main() {
    println!("cargo:rerun-if-env-changed=BUDDY_SLAB_CONFIG");
    match std::env::var("BUDDY_SLAB_CONFIG") {
        Ok(path) => println!("cargo:rerun-if-changed={path}"),
        Err(_) => println!("cargo:rerun-if-changed=configs/default.toml"),
    }
}
