/**
 * Name of the virtio-serial port carrying a KVM guest's vchans. The backend gives the port
 * this name in the domain XML; the guest finds its device by it under /sys/class/virtio-ports.
 */
export const KVM_VCHAN_PORT_NAME = 'org.odyssey.vchan.0';
