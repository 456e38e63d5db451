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
