"""Words of the panel in Chinese (default) and English: a table, looked up by key."""

from __future__ import annotations

LANGS = ("zh-CN", "en")
DEFAULT = "zh-CN"

# key: (zh-CN, en)
WORDS: dict[str, tuple[str, str]] = {
    "app": ("美特收费 管理后台", "meterpay admin"),
    "sign_in": ("登录", "Sign in"), "sign_out": ("退出", "Sign out"),
    "username": ("用户名", "Username"), "password": ("密码", "Password"),
    "sign_in_refused": ("用户名或密码错误，或账号已锁定", "Wrong username or password, or account locked"),
    "monitor": ("房间监控", "Room monitor"), "audit": ("操作日志", "Audit log"), "users": ("用户", "Users"),
    "tariffs": ("电价方案", "Tariffs"), "orders": ("订单", "Orders"), "site": ("站点", "Site"),
    "finance": ("财务", "Finance"), "reports": ("报表", "Reports"), "batches": ("批量任务", "Batches"),
    "building": ("楼栋", "Building"), "floor": ("楼层", "Floor"), "room": ("房间", "Room"),
    "all": ("全部", "All"), "search": ("搜索", "Search"), "filter": ("筛选", "Filter"),
    "state": ("状态", "State"), "online": ("在线", "Online"), "lost": ("离线", "Lost"),
    "partial": ("部分离线", "Partly lost"),
    "relay_on": ("合闸", "Power on"), "relay_off": ("拉闸", "Power off"),
    "valve_on": ("开阀", "Valve open"), "valve_off": ("关阀", "Valve closed"),
    "st_normal": ("正常", "Normal"), "st_alert1": ("一级预警", "Alert 1"), "st_alert2": ("二级预警", "Alert 2"),
    "st_alert3": ("三级预警", "Alert 3"), "st_cutoff": ("已断电", "Cut off"), "st_arrears": ("欠费", "Arrears"),
    "st_vacant": ("未开户", "No account"),
    "balance": ("余额", "Balance"), "rooms": ("房间数", "Rooms"), "page": ("页", "Page"),
    "prev": ("上一页", "Previous"), "next": ("下一页", "Next"), "live": ("实时", "Live"),
    "meter": ("表计", "Meter"), "electricity": ("电表", "Electricity"), "water": ("水表", "Water"),
    "voltage": ("电压", "Voltage"), "current": ("电流", "Current"), "power": ("功率", "Power"),
    "pf": ("功率因数", "Power factor"), "last_reading": ("最近读数", "Last reading"),
    "today_use": ("今日用量", "Used today"), "today_cost": ("今日费用", "Cost today"),
    "last_30_days": ("近30天用量", "Last 30 days"), "recent_orders": ("最近订单", "Recent orders"),
    "recent_commands": ("最近指令", "Recent commands"), "account": ("账户", "Account"),
    "tenant": ("租户", "Tenant"), "phone": ("电话", "Phone"), "open_account": ("开户", "Open account"),
    "close_account": ("销户", "Close account"), "recharge": ("充值", "Recharge"), "refund": ("退费", "Refund"),
    "amount_yuan": ("金额（元）", "Amount (yuan)"), "reason": ("原因", "Reason"), "note": ("备注", "Note"),
    "set_tariff": ("设置电价", "Set tariff"), "tariff": ("电价", "Tariff"), "save": ("保存", "Save"),
    "confirm": ("确认", "Confirm"), "cancel": ("取消", "Cancel"),
    "confirm_relay": ("确认远程控制", "Confirm remote switching"),
    "kind": ("类型", "Kind"), "provider": ("渠道", "Provider"), "amount": ("金额", "Amount"),
    "time": ("时间", "Time"), "actor": ("操作人", "Actor"), "action": ("操作", "Action"),
    "object": ("对象", "Object"), "before": ("之前", "Before"), "after": ("之后", "After"),
    "from": ("从", "From"), "to": ("到", "To"), "export_xlsx": ("导出 Excel", "Export to Excel"),
    "receipt": ("收据", "Receipt"), "print": ("打印", "Print"), "order_no": ("订单号", "Order no."),
    "role": ("角色", "Role"), "sites": ("站点", "Sites"), "add_user": ("新增用户", "Add user"),
    "r_owner": ("管理员", "Owner"), "r_operator": ("操作员", "Operator"), "r_cashier": ("收银员", "Cashier"),
    "r_viewer": ("只读", "Viewer"),
    "versions": ("版本", "Versions"), "effective_from": ("生效日期", "Effective from"),
    "add_version": ("新增版本", "Add version"), "spec": ("价格配置 (JSON)", "Price spec (JSON)"),
    "new_tariff": ("新增电价方案", "New tariff"), "name": ("名称", "Name"), "utility": ("类别", "Utility"),
    "cmd_state": ("指令状态", "Command state"), "queued": ("排队中", "Queued"), "sent": ("已下发", "Sent"),
    "confirmed": ("已确认", "Confirmed"), "failed": ("失败", "Failed"), "expired": ("已过期", "Expired"),
    "cancelled": ("已取消", "Cancelled"), "done": ("操作成功", "Done"), "no_account": ("未开户", "No account"),
    "language": ("English", "中文"), "cash": ("现金", "Cash"), "total": ("合计", "Total"),
    "unlock": ("解锁", "Unlock"), "deactivate": ("停用", "Deactivate"), "active": ("启用", "Active"),
    "locked": ("已锁定", "Locked"), "back": ("返回", "Back"), "updated": ("已更新", "Updated"),
}


def norm(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT


def translate(key: str, lang: str | None) -> str:
    """The word for `key` in `lang`; an unknown key shows itself so a gap is visible, not fatal."""
    pair = WORDS.get(key)
    if pair is None:
        return key
    return pair[LANGS.index(norm(lang))]


# Words of the delivery log, fee / apportionment / bill pages and the management pages.
WORDS.update({
    "deliveries": ("通知记录", "Deliveries"), "channel": ("通道", "Channel"), "recipient": ("接收人", "Recipient"),
    "attempts": ("尝试次数", "Attempts"), "sent_at": ("发送时间", "Sent at"), "error": ("错误", "Error"),
    "d_queued": ("排队中", "Queued"), "d_sending": ("发送中", "Sending"), "d_sent": ("已发送", "Sent"),
    "d_failed": ("失败", "Failed"), "d_skipped": ("已跳过", "Skipped"),
    "ch_sms": ("短信", "SMS"), "ch_voice": ("语音", "Voice call"), "ch_email": ("邮件", "Email"),
    "ch_wechat_template": ("公众号模板消息", "WeChat template"),
    "ch_wechat_subscribe": ("小程序订阅消息", "Mini-program message"), "ch_push": ("推送", "Push"),
    "fee_items": ("收费项目", "Fee items"), "new_fee_item": ("新增收费项目", "New fee item"), "code": ("编码", "Code"),
    "basis": ("计费方式", "Basis"), "b_fixed": ("固定金额", "Fixed"), "b_per_m2": ("按面积", "Per m²"),
    "rate_per_m2": ("每平方米单价（元）", "Rate per m² (yuan)"), "recurrence": ("周期", "Recurrence"),
    "rc_monthly": ("每月", "Monthly"), "rc_quarterly": ("每季度", "Quarterly"), "rc_yearly": ("每年", "Yearly"),
    "rc_one_time": ("一次性", "One-time"), "day_of_period": ("周期内第几天", "Day of period"),
    "starts_on": ("开始日期", "Starts on"), "ends_on": ("结束日期", "Ends on"), "collection": ("收取方式", "Collection"),
    "c_deduct": ("从余额扣除", "Deduct from wallet"), "c_bill": ("出账单催缴", "Issue a bill"),
    "prorate": ("入住/退租按天折算", "Prorate by days on move-in/out"), "scope": ("适用范围", "Applies to"),
    "sc_site": ("全站", "Whole site"), "sc_building": ("楼栋", "Building"), "sc_rooms": ("指定房间", "Chosen rooms"),
    "room_ids": ("房间编号（ID，逗号分隔）", "Room ids (comma separated)"), "inactive": ("停用", "Inactive"),
    "activate": ("启用", "Activate"),
    "apportion_groups": ("公摊分组", "Apportionment groups"), "new_group": ("新增公摊分组", "New group"),
    "master_meter": ("总表", "Master meter"), "method": ("分摊方式", "Method"), "m_ratio": ("按比例", "By ratio"),
    "m_area": ("按面积", "By area"), "m_usage": ("按用量", "By usage"), "members": ("分摊成员", "Members"),
    "member": ("成员", "Member"), "ratio": ("比例", "Ratio"), "group": ("分组", "Group"),
    "quantity": ("数量", "Quantity"), "apportion_runs": ("最近分摊", "Recent splits"),
    "members_help": ("每行一个：room:<房间ID> 或 meter:<表计ID>，按比例时加 =比例，如 room:12=0.6",
                     "One a line: room:<room id> or meter:<meter id>, for the ratio method add =ratio, e.g. room:12=0.6"),
    "run_monthend": ("手动月结", "Run month-end"), "period": ("账期（月）", "Period (month)"),
    "monthend_help": ("收取费用、分摊公共用量并生成后付费账单；重复执行不会重复收费。",
                      "Charges fees, splits common areas and generates postpaid bills; running it again charges nothing twice."),
    "bills": ("账单", "Bills"), "bill": ("账单", "Bill"), "bill_no": ("账单号", "Bill no."),
    "arrears": ("欠费", "Arrears"), "due_on": ("到期日", "Due on"), "paid": ("已收", "Paid"),
    "outstanding": ("未收", "Outstanding"), "overdue": ("逾期", "Overdue"), "period_start": ("账期开始", "Period start"),
    "open_bills": ("未结账单", "Open bills"), "oldest_due": ("最早到期", "Oldest due"),
    "days_overdue": ("逾期天数", "Days overdue"), "description": ("说明", "Description"),
    "bills_created": ("新账单", "bills created"), "fees_deducted": ("扣费笔数", "fees deducted"),
    "bs_draft": ("草稿", "Draft"), "bs_confirmed": ("已审核", "Confirmed"), "bs_issued": ("已出账", "Issued"),
    "bs_partly_paid": ("部分已付", "Partly paid"), "bs_paid": ("已付清", "Paid"), "bs_overdue": ("已逾期", "Overdue"),
    "bs_void": ("已作废", "Void"),
    "bill_confirm": ("审核", "Confirm"), "bill_reopen": ("退回草稿", "Reopen"), "bill_issue": ("出账", "Issue"),
    "bill_void": ("作废", "Void"),
})

WORDS.update({
    "places": ("楼栋房间", "Buildings & rooms"), "devices": ("网关表计", "Gateways & meters"),
    "buildings": ("楼栋", "Buildings"), "floors": ("楼层", "Floors"), "level": ("层号", "Level"),
    "area_m2": ("面积（m²）", "Area (m²)"), "timezone": ("时区", "Time zone"), "meters": ("表计", "Meters"),
    "company": ("物业公司", "Company"), "new_site": ("新增站点", "New site"),
    "new_building": ("新增楼栋", "New building"), "new_floor": ("新增楼层", "New floor"),
    "new_room": ("新增房间", "New room"), "gateways": ("网关", "Gateways"), "gateway": ("网关", "Gateway"),
    "new_gateway": ("新增网关", "New gateway"), "new_meter": ("新增表计", "New meter"),
    "protocol": ("协议", "Protocol"), "host": ("主机", "Host"), "port": ("端口", "Port"),
    "address": ("地址", "Address"), "model": ("型号", "Model"), "last_contact": ("最近通讯", "Last contact"),
    "import": ("导入", "Import"), "import_rooms": ("导入房间（CSV/XLSX）", "Import rooms (CSV/XLSX)"),
    "import_meters": ("导入表计（CSV/XLSX）", "Import meters (CSV/XLSX)"),
    "import_help": ("第一行为列名；文件中任一行有错则整个文件不导入，并逐行列出错误。",
                    "The first row names the columns; if any row is wrong nothing from the file is stored, "
                    "and every wrong row is listed."),
    "import_refused": ("文件未导入", "File not imported"), "imported": ("已导入", "Imported"),
    "column": ("列名", "Column"), "meaning": ("说明", "Meaning"),
    "col_room_building": ("楼栋名称（必填，不存在则新建）", "Building name (required; made if new)"),
    "col_room_floor": ("楼层号，整数（必填，不存在则新建）", "Floor level, a whole number (required; made if new)"),
    "col_room_number": ("房间号（必填，同楼栋内唯一）", "Room number (required, unique in its building)"),
    "col_room_area_m2": ("面积 m²（可选，默认 0）", "Area in m² (optional, default 0)"),
    "col_room_floor_name": ("楼层显示名（可选，如 1F）", "Floor display name (optional, e.g. 1F)"),
    "col_meter_address": ("表地址（必填）", "Meter address (required)"),
    "col_meter_utility": ("electricity 或 water（必填）", "electricity or water (required)"),
    "col_meter_model": ("型号键（必填，见新增表计的列表）", "Model key (required; see the list in New meter)"),
    "col_meter_protocol": ("modbus_rtu_tcp / modbus_tcp / dlt645_tcp / mqtt（必填）",
                           "modbus_rtu_tcp / modbus_tcp / dlt645_tcp / mqtt (required)"),
    "col_meter_gateway": ("网关编码（可选，须已存在）", "Gateway code (optional; must exist)"),
    "col_meter_port": ("网关端口/回路（可选，默认 1）", "Gateway port / loop (optional, default 1)"),
    "col_meter_building": ("楼栋名称（填房间时必填）", "Building name (required with room)"),
    "col_meter_room": ("房间号（可选，须已存在）", "Room number (optional; must exist)"),
    "col_meter_tariff": ("电价方案名称（可选，类别须一致）", "Tariff name (optional; same utility)"),
    "col_meter_is_master": ("是否公摊总表：1/0（可选）", "Common-area master meter: 1/0 (optional)"),
})
