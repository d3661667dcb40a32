# The "Quick Usage Example" of Pycom's Bluetooth page (seed 003_2ff375a87fefcf01.txt), with the
# gaps the seed's extraction lost filled in from Pycom's published example: `bt.start_scan(-1)`,
# `adv.data`, `conn.services()`, the time.sleep(0.050) pacing, the else branch of the uuid print,
# `char.properties()`, `char.read()`, `conn.disconnect()`/`break` and the try/except around the
# connection. One change: it looks for the name the seed's server example advertises ('LoPy')
# instead of 'Heart Rate'.
from network import Bluetooth
import time
bt = Bluetooth()
bt.start_scan(-1)

while True:
  adv = bt.get_adv()
  if adv and bt.resolve_adv_data(adv.data, Bluetooth.ADV_NAME_CMPL) == 'LoPy':
      try:
          conn = bt.connect(adv.mac)
          services = conn.services()
          for service in services:
              time.sleep(0.050)
              if type(service.uuid()) == bytes:
                  print('Reading chars from service = {}'.format(service.uuid()))
              else:
                  print('Reading chars from service = %x' % service.uuid())
              chars = service.characteristics()
              for char in chars:
                  if (char.properties() & Bluetooth.PROP_READ):
                      print('char {} value = {}'.format(char.uuid(), char.read()))
          conn.disconnect()
          break
      except:
          print("Error while connecting or reading from the BLE device")
          break
  else:
      time.sleep(0.050)
