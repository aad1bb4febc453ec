//! flagsync: marketplace flagship-store synchronizer.
