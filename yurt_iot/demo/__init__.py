"""`yurt-iot demo`: simulated Modbus, OPC-UA and MQTT devices, a broker and a gateway on this machine, with a live
table of what the gateway reads; and the device table `yurt-iot devices ls` prints."""
