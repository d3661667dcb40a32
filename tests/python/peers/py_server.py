"""A Python GATT server in later firmware's style (two-argument handlers): prints what it sees.

Characteristic 0xFEE1 (READ|WRITE|NOTIFY): a read is answered by the handler ('from-handler'),
a write is reported with the event bits, a subscription is reported with config() and
gatts_mtu() and answered by notifying 'notified' through value().
"""
from network import Bluetooth

bt = Bluetooth()
bt.set_advertisement(name='PyServer')


def conn_cb(arg, event_value):
    event, _ = event_value
    if event == Bluetooth.CLIENT_CONNECTED:
        print("connected")
    elif event == Bluetooth.CLIENT_DISCONNECTED:
        print("disconnected")


bt.callback(trigger=Bluetooth.CLIENT_CONNECTED | Bluetooth.CLIENT_DISCONNECTED, handler=conn_cb)
srv = bt.service(0xFEE0)
ch = srv.characteristic(uuid=0xFEE1, value=b'init',
                        properties=Bluetooth.PROP_READ | Bluetooth.PROP_WRITE | Bluetooth.PROP_NOTIFY)


def ch_cb(c, event_value):
    event, data = event_value
    if event == Bluetooth.CHAR_READ_EVENT:
        print("read")
        return b'from-handler'
    if event == Bluetooth.CHAR_WRITE_EVENT:
        print("write {} events={} stored={}".format(data, c.events(), c.value()))
    elif event == Bluetooth.CHAR_SUBSCRIBE_EVENT:
        print("subscribed config={} mtu={}".format(c.config(), bt.gatts_mtu()))
        c.value(b'notified')


ch.callback(trigger=Bluetooth.CHAR_READ_EVENT | Bluetooth.CHAR_WRITE_EVENT | Bluetooth.CHAR_SUBSCRIBE_EVENT,
            handler=ch_cb)
bt.advertise(True)
