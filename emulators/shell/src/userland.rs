//! The distro record the shell builds its world from, rebuilt from what a
//! decky's spec carries ([`Userland`]), for emulators that have no catalogue.

use decnet_core::catalogue::{Distro, Userland};

/// The distro `slug` as the decky's userland describes it.
pub fn distro_of(slug: &str, userland: &Userland) -> Distro {
    Distro {
        slug: slug.to_string(),
        order: 0,
        display_name: userland.distro_name.clone(),
        image: String::new(),
        hostname_style: String::new(),
        shell: userland.shell.clone(),
        ps1: userland.ps1.clone(),
        issue: userland.issue.clone(),
        os_release: userland.os_release.clone(),
        kernel: userland.kernel.clone(),
        service_defaults: Default::default(),
    }
}
