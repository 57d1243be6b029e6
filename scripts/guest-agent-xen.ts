// Entry point of the Xen guest image (bundled by build-guest-image.sh): the agent's Xen guest
// program, which the Debian template runs from the agent's dist.
//
// The image needs, besides node and this bundle: node_modules/koffi and
// node_modules/@koromix/koffi-linux-x64 next to the bundle (koffi is kept out of it), the Xen
// libraries libxenvchan.so.4.17, libxenstore.so.4, libxengnttab.so.1, libxenevtchn.so.1,
// libxentoolcore.so.1 and libxentoollog.so.1, and /dev/xen (evtchn, gntalloc, gntdev, xenbus).
import '../agent/src/xen-guest-main.js';
