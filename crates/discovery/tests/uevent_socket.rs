//! The real socket: as root, writing `change` to a device's `uevent` file makes the kernel
//! emit an event, which the socket must deliver.

use std::time::{Duration, Instant};

use pcitrack_discovery::socket::{KERNEL_GROUP, Received, UeventSocket};

#[test]
fn a_real_kernel_uevent_arrives() {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let device = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok());
    let (true, Some(device)) = (is_root, device) else {
        eprintln!("SKIPPED: needs root and a PCI device in /sys to trigger a real uevent");
        return;
    };
    let address = device.file_name().to_string_lossy().into_owned();
    let socket = UeventSocket::open(KERNEL_GROUP).unwrap();
    std::fs::write(device.path().join("uevent"), "change").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Received::Event(e) = socket.recv(Duration::from_millis(500)).unwrap()
            && e.pci_address().map(|a| a.to_string()) == Some(address.clone())
        {
            assert_eq!(e.action, "change");
            assert!(!e.from_udev);
            return;
        }
    }
    panic!("no change uevent for {address} within 5 s");
}
