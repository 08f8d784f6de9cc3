//! Selects the backend, as the published crate does: `cfg(tlsf)` when the
//! `tlsf` feature is on, else `cfg(buddy_slab)` with `buddy-slab`, else
//! neither (the stub). `tlsf` wins so that a kernel can ask for TLSF even
//! though axplat-dyn turns `buddy-slab` on for every ax-runtime kernel.
fn main() {
    let on = |feature: &str| std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some();
    if on("TLSF") {
        println!("cargo:rustc-cfg=tlsf");
    } else if on("BUDDY_SLAB") {
        println!("cargo:rustc-cfg=buddy_slab");
    }
}
