"""Type stubs for the native module behind gattling.network (Pycom's network.Bluetooth API)."""

from typing import Any, Callable, List, NamedTuple, Optional, Tuple, Type, Union

Buffer = Union[bytes, bytearray, memoryview]
UUID = Union[int, bytes, bytearray, str]
Value = Union[int, str, bytes, bytearray]
Handler = Union[Callable[[Any], Any], Callable[[Any, Tuple[int, Optional[bytes]]], Any]]

class adv(NamedTuple):
    mac: bytes
    addr_type: int
    adv_type: int
    rssi: int
    data: bytes

class GATTSCharacteristic:
    def value(self, value: Optional[Value] = ...) -> Optional[bytes]: ...
    def callback(self, trigger: Optional[int] = ..., handler: Optional[Handler] = ..., arg: Any = ...) -> None: ...
    def events(self) -> int: ...
    def config(self) -> int: ...

class GATTSService:
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def characteristic(
        self, *, uuid: UUID, permissions: Optional[int] = ..., properties: Optional[int] = ..., value: Optional[Value] = ...
    ) -> GATTSCharacteristic: ...

class GATTCCharacteristic:
    def uuid(self) -> Union[int, bytes]: ...
    def instance(self) -> int: ...
    def properties(self) -> int: ...
    def read(self) -> bytes: ...
    def read_descriptor(self, uuid: int) -> Optional[bytes]: ...
    def write(self, value: Buffer) -> None: ...
    def value(self) -> bytes: ...
    def callback(self, trigger: int, handler: Optional[Handler] = ..., arg: Any = ...) -> None: ...

class GATTCService:
    def isprimary(self) -> bool: ...
    def uuid(self) -> Union[int, bytes]: ...
    def instance(self) -> int: ...
    def characteristics(self) -> List[GATTCCharacteristic]: ...

class GATTCConnection:
    def isconnected(self) -> bool: ...
    def disconnect(self) -> None: ...
    def services(self) -> List[GATTCService]: ...
    def get_mtu(self) -> Optional[int]: ...

class Bluetooth:
    timeout: Type[TimeoutError]
    CONN_ADV: int
    CONN_DIR_ADV: int
    DISC_ADV: int
    NON_CONN_ADV: int
    SCAN_RSP: int
    PUBLIC_ADDR: int
    RANDOM_ADDR: int
    PUBLIC_RPA_ADDR: int
    RANDOM_RPA_ADDR: int
    ADV_BLE_ADDR_TYPE_PUBLIC: int
    ADV_BLE_ADDR_TYPE_RANDOM: int
    ADV_BLE_ADDR_TYPE_RPA_PUBLIC: int
    ADV_BLE_ADDR_TYPE_RPA_RANDOM: int
    ADV_FLAG: int
    ADV_16SRV_PART: int
    ADV_T16SRV_CMPL: int
    ADV_32SRV_PART: int
    ADV_32SRV_CMPL: int
    ADV_128SRV_PART: int
    ADV_128SRV_CMPL: int
    ADV_NAME_SHORT: int
    ADV_NAME_CMPL: int
    ADV_TX_PWR: int
    ADV_DEV_CLASS: int
    ADV_SERVICE_DATA: int
    ADV_APPEARANCE: int
    ADV_ADV_INT: int
    ADV_32SERVICE_DATA: int
    ADV_128SERVICE_DATA: int
    ADV_MANUFACTURER_DATA: int
    PROP_BROADCAST: int
    PROP_READ: int
    PROP_WRITE_NR: int
    PROP_WRITE: int
    PROP_NOTIFY: int
    PROP_INDICATE: int
    PROP_AUTH: int
    PROP_EXT_PROP: int
    PERM_READ: int
    PERM_READ_ENCRYPTED: int
    PERM_READ_ENC_MITM: int
    PERM_WRITE: int
    PERM_WRITE_ENCRYPTED: int
    PERM_WRITE_ENC_MITM: int
    PERM_WRITE_SIGNED: int
    PERM_WRITE_SIGNED_MITM: int
    CHAR_CONFIG_NOTIFY: int
    CHAR_CONFIG_INDICATE: int
    NEW_ADV_EVENT: int
    CLIENT_CONNECTED: int
    CLIENT_DISCONNECTED: int
    CHAR_READ_EVENT: int
    CHAR_WRITE_EVENT: int
    CHAR_NOTIFY_EVENT: int
    CHAR_SUBSCRIBE_EVENT: int
    INT_ANT: int
    EXT_ANT: int
    MAN_ANT: int
    ADV_TYPE_IND: int
    ADV_TYPE_DIRECT_IND_HIGH: int
    ADV_TYPE_SCAN_IND: int
    ADV_TYPE_NONCONN_IND: int
    ADV_TYPE_DIRECT_IND_LOW: int
    ADV_CHNL_37: int
    ADV_CHNL_38: int
    ADV_CHNL_39: int
    ADV_CHNL_ALL: int
    ADV_FILTER_ALLOW_SCAN_ANY_CON_ANY: int
    ADV_FILTER_ALLOW_SCAN_WLST_CON_ANY: int
    ADV_FILTER_ALLOW_SCAN_ANY_CON_WLST: int
    ADV_FILTER_ALLOW_SCAN_WLST_CON_WLST: int
    TX_PWR_CONN: int
    TX_PWR_ADV: int
    TX_PWR_SCAN: int
    TX_PWR_DEFAULT: int
    TX_PWR_N12: int
    TX_PWR_N9: int
    TX_PWR_N6: int
    TX_PWR_N3: int
    TX_PWR_0: int
    TX_PWR_P3: int
    TX_PWR_P6: int
    TX_PWR_P9: int
    def __init__(
        self,
        id: int = 0,
        *,
        mode: Optional[int] = ...,
        antenna: Optional[int] = ...,
        modem_sleep: Optional[bool] = ...,
        pin: Optional[int] = ...,
        privacy: Optional[bool] = ...,
        secure_connections: Optional[bool] = ...,
        mtu: Optional[int] = ...,
        transport: Optional[str] = ...,
    ) -> None: ...
    def init(
        self,
        *,
        mode: Optional[int] = ...,
        antenna: Optional[int] = ...,
        modem_sleep: Optional[bool] = ...,
        pin: Optional[int] = ...,
        privacy: Optional[bool] = ...,
        secure_connections: Optional[bool] = ...,
        mtu: Optional[int] = ...,
        transport: Optional[str] = ...,
    ) -> None: ...
    def deinit(self) -> None: ...
    def start_scan(self, timeout: float) -> None: ...
    def stop_scan(self) -> None: ...
    def isscanning(self) -> bool: ...
    def get_adv(self) -> Optional[adv]: ...
    def get_advertisements(self) -> List[adv]: ...
    def resolve_adv_data(self, data: Optional[Buffer], data_type: int) -> Union[int, str, bytes, None]: ...
    def connect(
        self, mac_addr: Union[str, Buffer], *, timeout: Optional[int] = ..., addr_type: Optional[int] = ...
    ) -> GATTCConnection: ...
    def callback(self, trigger: Optional[int] = ..., handler: Optional[Handler] = ..., arg: Any = ...) -> None: ...
    def events(self) -> int: ...
    def set_advertisement(
        self,
        *,
        name: Optional[Union[str, Buffer]] = ...,
        manufacturer_data: Optional[Union[str, Buffer]] = ...,
        service_data: Optional[Union[str, Buffer]] = ...,
        service_uuid: Optional[Union[int, Buffer]] = ...,
    ) -> None: ...
    def set_advertisement_raw(self, data: Optional[Buffer]) -> None: ...
    def set_advertisement_params(
        self,
        *,
        adv_int_min: Optional[int] = ...,
        adv_int_max: Optional[int] = ...,
        adv_type: Optional[int] = ...,
        own_addr_type: Optional[int] = ...,
        channel_map: Optional[int] = ...,
        adv_filter_policy: Optional[int] = ...,
    ) -> None: ...
    def advertise(self, enable: bool) -> None: ...
    def service(self, uuid: UUID, *, isprimary: bool = ..., nbr_chars: int = ..., start: bool = ...) -> GATTSService: ...
    def disconnect_client(self) -> None: ...
    def gatts_mtu(self) -> Optional[int]: ...
    def set_pin(self, pin: int) -> None: ...
    def nvram_erase(self) -> None: ...
    def modem_sleep(self, enable: Optional[bool] = ...) -> Optional[bool]: ...
    def tx_power(self, type: int, level: Optional[int] = ...) -> Optional[int]: ...
