//! Real containers through youki's libcontainer. SKELETON: being written.

pub mod network;
