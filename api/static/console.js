/* firewatch operator console (docs/console.md). Plain JavaScript, no build step, no third-party code.
 *
 * Rules kept throughout:
 *  - every string shown comes from I18N below (Chinese by default, English from the toggle);
 *  - data from the API is only ever put into the page as text (textContent, attributes), never as
 *    markup, so a device name or a note cannot inject anything;
 *  - a failed or malformed response shows a readable message and leaves the rest of the page working.
 */
"use strict";

// --- strings ---------------------------------------------------------------------------------------

const I18N = {
  zh: {
    "app.title": "消防控制室", "nav.board": "报警", "nav.places": "位置", "nav.tickets": "整改单",
    wall: "大屏", dismiss: "关闭", back: "返回", cancel: "取消", submit: "提交", signout: "退出登录",
    "login.title": "登录", "login.hint": "请使用您的账号登录消防控制室", "login.username": "用户名",
    "login.password": "密码", "login.submit": "登录", "login.need": "请填写用户名和密码",
    "login.e401": "用户名或密码错误", "login.e403": "此账号不允许登录", "login.e429": "登录失败次数过多，请稍后再试",
    "login.expired": "登录已失效，请重新登录", "login.signed_out": "已退出登录",
    "lang.other": "English", "sound.on": "声音：开", "sound.off": "声音：关",
    "conn.open": "实时", "conn.connecting": "连接中…", "conn.closed": "已断开，重连中…",
    "board.title": "火灾报警", "board.empty": "系统正常，无报警", "board.fire_strip": "火警",
    "gas.title": "可燃气体报警", "gas.empty": "可燃气体正常",
    "cat.fire": "火警", "cat.pre_alarm": "预警", "cat.supervisory": "监管", "cat.fault": "故障", "cat.disabled": "屏蔽",
    "cat.hazard": "隐患", "cat.normal": "正常",
    "state.active_unacknowledged": "未确认", "state.active_acknowledged": "已确认",
    "state.cleared_unacknowledged": "已恢复·未确认", "state.cleared_acknowledged": "已恢复·已确认",
    "state.closed": "已关闭",
    "alarm.time": "时间", "alarm.category": "类别", "alarm.type": "报警类型", "alarm.value": "数值",
    "alarm.state": "状态", "alarm.acked": "确认", "alarm.device": "设备", "alarm.first": "首次",
    "alarm.times": "次", "alarm.dept": "科室", "alarm.actions": "操作",
    "ack.button": "确认", "ack.title": "确认报警", "ack.note": "备注", "ack.false_alarm": "误报",
    "ack.submit": "确认", "ack.by": "{who} 于 {when} 确认", "ack.as": "确认人：{who}",
    "ack.false_marked": "（误报）",
    "reset.button": "复位", "reset.title": "火警复位",
    "reset.confirm": "火警保持至复位（GB 4717）。复位后若现场仍有火情，将重新报警。确认已到场核实并复位？",
    "drill.badge": "演练", "inc.drill": "这是真实火警", "inc.drill_title": "这是真实火警",
    "inc.drill_submit": "转为真实火警",
    "inc.drill_confirm": "此事件将退出演练，立即按火警推送给值班人员，重新受理和核实。",
    "latch.mark": "火警保持，待复位", "latch.normal": "读数已于 {when} 恢复正常，仍需复位",
    "clear.button": "清除", "clear.title": "清除报警", "unshelve.button": "取消搁置", "unshelve.title": "取消搁置",
    "shelve.button": "搁置", "shelve.title": "搁置报警", "shelve.duration": "搁置时长", "shelve.reason": "搁置原因（必填）",
    "shelve.15m": "15 分钟", "shelve.1h": "1 小时", "shelve.4h": "4 小时", "shelve.8h": "8 小时", "shelve.24h": "24 小时",
    "shelve.need_note": "请填写搁置原因", "shelve.until": "已搁置至 {when}（{who}：{note}）",
    "device.button": "设备", "device.id": "设备编号", "device.name": "名称", "device.kind": "类型",
    "device.place": "位置", "device.state": "状态", "device.profile": "型号", "device.system": "系统",
    "device.department": "科室", "device.responsible": "责任人", "device.installed": "安装日期",
    "device.tags": "标签",
    "history.title": "历史曲线", "history.channel": "通道", "history.window": "近1小时（每桶最小/平均/最大）",
    "history.none": "该时段没有数据", "history.points": "{n} 个数据点",
    "log.title": "报警记录", "log.empty": "无报警记录",
    "places.title": "位置", "places.hint": "选择一个防火分区查看设备", "places.devices": "{n} 台设备",
    "kind.site": "院区", "kind.building": "楼栋", "kind.floor": "楼层", "kind.zone": "防火分区", "kind.room": "房间",
    "tickets.title": "隐患整改单", "tickets.open_only": "仅未关闭", "tickets.mine": "我的整改单", "tickets.empty": "没有整改单",
    "ticket.number": "编号", "ticket.status": "状态", "ticket.category": "类别", "ticket.place": "位置",
    "ticket.problem": "检查发现问题", "ticket.deadline": "整改时限", "ticket.overdue": "超期",
    "ticket.assignee": "整改人", "ticket.feedback": "整改落实情况反馈", "ticket.history": "处理记录",
    "ticket.department": "科室", "ticket.responsible": "责任人", "ticket.measures": "整改措施与意见",
    "ticket.inspectors": "检查人员", "ticket.inspection_time": "检查时间", "ticket.device": "设备",
    "ticket.source": "来源", "ticket.hazard_type": "隐患类型", "ticket.occurrences": "发生次数",
    "ticket.feedback_signed_by": "负责人签字", "ticket.confirmed_by": "整改确认签字",
    "ticket.leader_signed_by": "分管领导签字", "ticket.ready": "遥测已恢复正常，可复检",
    "ticket.yes": "是", "ticket.no_actions": "当前角色在此状态下无可用操作",
    "ticket.need": "请填写：{what}",
    "comments.title": "备注", "comments.empty": "暂无备注", "comments.add": "添加备注", "comments.submit": "发表备注",
    "comments.need": "请填写备注内容",
    "evidence.title": "附件（整改证据）", "evidence.file": "文件", "evidence.size": "大小", "evidence.by": "上传人",
    "evidence.empty": "暂无附件", "evidence.camera": "拍照上传", "evidence.choose": "选择文件", "evidence.upload": "上传附件", "evidence.need": "请选择文件",
    "status.open": "待派单", "status.assigned": "已派单", "status.rectifying": "整改中",
    "status.rectified": "已整改", "status.verified": "已复检", "status.closed": "已关闭",
    "action.assign": "派单", "action.start": "开始整改", "action.rectify": "整改完成",
    "action.verify": "复检通过", "action.reject": "复检不通过", "action.close": "关闭整改单",
    "action.extend": "延期", "action.opened": "创建", "action.recurred": "再次发生",
    "action.comment": "备注", "action.attach": "附件", "action.edit": "修改", "action.overdue": "超期", "action.ready": "可复检", "action.not_ready": "状况复发",
    role: "角色", "role.viewer": "查看", "role.operator": "值班员", "role.maintenance": "维保人员",
    "role.safety": "保卫科", "role.leader": "分管领导", "role.admin": "管理员",
    "source.alarm": "报警", "source.patrol": "巡查", "source.inspection": "检查", "source.maintenance": "维保", "source.staff_report": "随手拍",
    "error.http": "请求失败（{status}）：{detail}", "error.network": "无法连接服务：{detail}",
    "error.format": "服务返回的数据格式不正确：{detail}",
    "login.e503": "数据库暂不可用，正在重试…",
    "outage.banner": "数据库暂不可用：报警仍实时显示，恢复后自动记录",
    "unrec.mark": "未记录 · 数据库不可用", "unrec.ack_later": "记录后方可确认",
    "service.device": "消防监控服务", "actor.system": "系统",
    "svc.ingest.storage_failing": "数据库不可用", "svc.ingest.unacked_backlog": "消息确认积压",
    "svc.ingest.stalled": "数据接入停滞", "svc.ingest.broker_down": "与消息服务器的连接中断",
    "ikind.fire": "火情", "ikind.gas": "燃气泄漏", "ikind.outage": "通信中断", "ikind.supervisory": "监管异常",
    "ikind.fault": "设备故障", "ikind.disabled": "部件屏蔽", "ikind.hazard": "隐患",
    "istate.open": "报警中", "istate.ended": "报警已恢复", "istate.closed": "已结束",
    "ver.pending": "待核实", "ver.verifying": "核实中", "ver.confirmed": "真实火警", "ver.false_alarm": "误报",
    "ver.test": "测试", "ver.confirmed_gas": "确认泄漏",
    "cause.dust": "灰尘/污染", "cause.steam": "水汽/蒸汽", "cause.cooking": "油烟", "cause.works": "施工/动火作业",
    "cause.device": "设备故障", "cause.human": "人为误触", "cause.other": "其他",
    "inc.unacked": "未受理", "inc.acked": "已受理",
    "inc.ack": "受理", "inc.verify": "核实中", "inc.verdict": "核实结果", "inc.call119": "已拨打119", "inc.reset": "复位",
    "inc.ack_title": "受理报警事件", "inc.verify_title": "派人现场核实", "inc.verdict_title": "核实结果",
    "inc.call119_title": "记录拨打119", "inc.reset_title": "火警复位",
    "inc.ack_submit": "受理", "inc.verify_submit": "核实中", "inc.verdict_submit": "提交核实结果",
    "inc.call119_submit": "已拨打119", "inc.reset_submit": "复位",
    "inc.as": "操作人：{who}", "inc.verifier": "核实人（谁去现场）", "inc.verifier_hint": "如：微型消防站 王五；留空为本人",
    "inc.cause": "误报原因", "inc.need_verdict": "请选择核实结果", "inc.need_cause": "请选择误报原因",
    "inc.call119_confirm": "记录已向119报警（时间为现在）。请在备注中写明接警情况。",
    "inc.call119_due": "请立即拨打119",
    "inc.zone_confirmed": "分区双探测器确认", "inc.elapsed": "已持续 {t}",
    "inc.verify_left": "核实剩余 {t}", "inc.verify_overdue": "核实超时 {t}",
    "inc.devices": "{d} 台设备 · {n} 条报警", "inc.active": "{n} 条仍在报警", "inc.spread": "涉及 {z} 个分区、{f} 个楼层",
    "inc.first": "首报 {when}", "inc.alarms": "报警明细（{n}）",
    "inc.acked_by": "{who} 于 {when} 受理", "inc.verifying_by": "{who} 前往现场核实（{when}）",
    "inc.verdict_by": "核实结果：{v}（{who}，{when}）", "inc.called_119": "已于 {when} 拨打119（{who}）",
    "inc.reset_by": "{who} 于 {when} 复位",
    "sound.blocked": "浏览器未允许自动播放报警声音", "sound.enable": "点击开启报警声音",
    "type.smoke.alarm": "感烟火警", "type.smoke.pre_alarm": "感烟预警", "type.gas.alarm": "可燃气体报警",
    "type.zone.fire_confirmed": "分区火警确认", "type.device.offline": "设备离线",
    "type.device.outage": "区域通信中断", "type.device.fault": "设备故障", "type.device.tamper": "设备防拆",
    "type.device.alarm": "设备报警", "type.device.low_battery": "电池电量低", "type.device.weak_signal": "信号弱",
    "type.device.clock_wrong": "设备时钟错误", "type.device.reset": "设备复位", "type.sensor.flapping": "传感器频繁报警",
    "type.device.supervisory": "监管报警", "type.device.disabled": "部件屏蔽", "type.device.power_fault": "电源故障",
    "type.device.unregistered": "未登记部件上报", "type.unknown": "报警",
    "ch.smoke": "烟雾", "ch.temp": "温度", "ch.lel": "可燃气体浓度", "ch.current": "电流",
    "ch.residual_current": "剩余电流", "ch.temp_l1": "L1相温度", "ch.temp_l2": "L2相温度", "ch.temp_l3": "L3相温度",
    "ch.temp_n": "N线温度", "ch.open": "门状态", "ch.pressure": "压力", "ch.level": "液位",
    "lvl.pre_alarm": "预警", "lvl.alarm": "报警", "lvl.hot": "过热", "lvl.overload": "过载", "lvl.out_of_range": "超出量程",
    "lvl.stuck": "读数不变", "lvl.rising": "持续上升", "lvl.held_open": "常开", "lvl.low": "过低", "lvl.very_low": "严重过低",
    "lvl.high": "过高", "lvl.sudden_drop": "骤降", "lvl.slow_leak": "缓慢下降（疑似泄漏）", "lvl.jump": "跳变",
    "lvl.rate_of_rise": "温升速率报警", "lvl.rise": "温升报警", "lvl.dirty_chamber": "迷宫污染", "lvl.unusual": "异常",
    "lvl.level1": "低限报警", "lvl.level2": "高限报警",
    "dkind.smoke": "感烟探测器", "dkind.heat": "感温探测器", "dkind.smoke_heat": "感烟感温复合探测器",
    "dkind.water_pressure": "水压", "dkind.water_level": "液位", "dkind.electrical_fire": "电气火灾监控",
    "dkind.combustible_gas": "可燃气体探测器", "dkind.oxygen_pressure": "氧气压力", "dkind.fire_door": "防火门",
    "dkind.charging_socket": "充电插座", "dkind.transmission_device": "用户信息传输装置",
    "dkind.fire_alarm_panel": "火灾报警控制器", "dkind.manual_call_point": "手动报警按钮", "dkind.module": "输入/输出模块",
    "sys.fire_alarm": "火灾自动报警系统", "sys.combustible_gas": "可燃气体探测报警系统", "sys.electrical_fire": "电气火灾监控系统",
    "sys.water_supply": "消防给水系统", "sys.medical_gas": "医用气体系统", "sys.fire_door": "防火门监控系统",
  },
  en: {
    "app.title": "Fire control room", "nav.board": "Alarms", "nav.places": "Places", "nav.tickets": "Tickets",
    wall: "Wall", dismiss: "Dismiss", back: "Back", cancel: "Cancel", submit: "Submit", signout: "Sign out",
    "login.title": "Sign in", "login.hint": "Sign in to the fire control room with your account", "login.username": "User name",
    "login.password": "Password", "login.submit": "Sign in", "login.need": "Enter your user name and password",
    "login.e401": "Wrong user name or password", "login.e403": "This account may not sign in",
    "login.e429": "Too many failed sign-ins: wait, then try again",
    "login.expired": "Your session has ended: sign in again", "login.signed_out": "Signed out",
    "lang.other": "中文", "sound.on": "Sound: on", "sound.off": "Sound: off",
    "conn.open": "Live", "conn.connecting": "Connecting…", "conn.closed": "Disconnected, reconnecting…",
    "board.title": "Fire alarms", "board.empty": "All normal: no alarms", "board.fire_strip": "FIRE",
    "gas.title": "Combustible gas alarms", "gas.empty": "Gas: all normal",
    "cat.fire": "Fire", "cat.pre_alarm": "Pre-alarm", "cat.supervisory": "Supervisory", "cat.fault": "Fault", "cat.disabled": "Disabled",
    "cat.hazard": "Hazard", "cat.normal": "Normal",
    "state.active_unacknowledged": "Unacknowledged", "state.active_acknowledged": "Acknowledged",
    "state.cleared_unacknowledged": "Cleared, unacknowledged", "state.cleared_acknowledged": "Cleared, acknowledged",
    "state.closed": "Closed",
    "alarm.time": "Time", "alarm.category": "Category", "alarm.type": "Alarm type", "alarm.value": "Value",
    "alarm.state": "State", "alarm.acked": "Acknowledged", "alarm.device": "Device", "alarm.first": "First",
    "alarm.times": "times", "alarm.dept": "Department", "alarm.actions": "Actions",
    "ack.button": "Acknowledge", "ack.title": "Acknowledge alarm", "ack.note": "Note",
    "ack.false_alarm": "False alarm", "ack.submit": "Acknowledge", "ack.by": "Acknowledged by {who} at {when}",
    "ack.as": "Acknowledging as {who}", "ack.false_marked": " (false alarm)",
    "reset.button": "Reset", "reset.title": "Reset fire alarm",
    "reset.confirm": "A fire alarm stays until it is reset (GB 4717). If the fire is still there it will alarm again. Checked on site and reset it?",
    "drill.badge": "Drill", "inc.drill": "This is a real fire", "inc.drill_title": "This is a real fire",
    "inc.drill_submit": "Make it a real fire",
    "inc.drill_confirm": "The incident leaves the drill and is pushed to the people on duty as a fire now, to be acknowledged and verified anew.",
    "latch.mark": "Latched until reset", "latch.normal": "Reading back to normal at {when}; still needs a reset",
    "clear.button": "Clear", "clear.title": "Clear alarm", "unshelve.button": "Unshelve", "unshelve.title": "Unshelve alarm",
    "shelve.button": "Shelve", "shelve.title": "Shelve alarm", "shelve.duration": "Shelve for", "shelve.reason": "Reason (required)",
    "shelve.15m": "15 minutes", "shelve.1h": "1 hour", "shelve.4h": "4 hours", "shelve.8h": "8 hours", "shelve.24h": "24 hours",
    "shelve.need_note": "Give the reason for shelving", "shelve.until": "Shelved until {when} ({who}: {note})",
    "device.button": "Device", "device.id": "Device", "device.name": "Name", "device.kind": "Kind",
    "device.place": "Place", "device.state": "State", "device.profile": "Profile", "device.system": "System",
    "device.department": "Department", "device.responsible": "Responsible", "device.installed": "Installed",
    "device.tags": "Tags",
    "history.title": "History", "history.channel": "Channel", "history.window": "last hour (min/mean/max per bucket)",
    "history.none": "No data in this period", "history.points": "{n} points",
    "log.title": "Alarm log", "log.empty": "No alarms",
    "places.title": "Places", "places.hint": "Choose a zone to see its devices", "places.devices": "{n} devices",
    "kind.site": "Site", "kind.building": "Building", "kind.floor": "Floor", "kind.zone": "Zone", "kind.room": "Room",
    "tickets.title": "Hazard tickets", "tickets.open_only": "Open only", "tickets.mine": "My tickets", "tickets.empty": "No tickets",
    "ticket.number": "Number", "ticket.status": "Status", "ticket.category": "Category", "ticket.place": "Place",
    "ticket.problem": "Problem found", "ticket.deadline": "Deadline", "ticket.overdue": "Overdue",
    "ticket.assignee": "Assignee", "ticket.feedback": "Rectification feedback", "ticket.history": "History",
    "ticket.department": "Department", "ticket.responsible": "Responsible", "ticket.measures": "Measures",
    "ticket.inspectors": "Inspectors", "ticket.inspection_time": "Inspected", "ticket.device": "Device",
    "ticket.source": "Source", "ticket.hazard_type": "Hazard type", "ticket.occurrences": "Occurrences",
    "ticket.feedback_signed_by": "Feedback signed by", "ticket.confirmed_by": "Confirmed by",
    "ticket.leader_signed_by": "Leader signed", "ticket.ready": "Telemetry normal again: ready for re-inspection",
    "ticket.yes": "yes", "ticket.no_actions": "Nothing this role can do in this status",
    "ticket.need": "Required: {what}",
    "comments.title": "Comments", "comments.empty": "No comments", "comments.add": "Add a comment", "comments.submit": "Post comment",
    "comments.need": "Write the comment first",
    "evidence.title": "Evidence", "evidence.file": "File", "evidence.size": "Size", "evidence.by": "Uploaded by",
    "evidence.empty": "No evidence", "evidence.camera": "Take a photo", "evidence.choose": "Choose a file", "evidence.upload": "Upload", "evidence.need": "Choose a file first",
    "status.open": "Open", "status.assigned": "Assigned", "status.rectifying": "Rectifying",
    "status.rectified": "Rectified", "status.verified": "Verified", "status.closed": "Closed",
    "action.assign": "Assign", "action.start": "Start work", "action.rectify": "Rectified",
    "action.verify": "Verify", "action.reject": "Reject", "action.close": "Close ticket",
    "action.extend": "Extend", "action.opened": "Opened", "action.recurred": "Recurred",
    "action.comment": "Comment", "action.attach": "Evidence", "action.edit": "Edited", "action.overdue": "Overdue", "action.ready": "Ready", "action.not_ready": "Not ready",
    role: "Role", "role.viewer": "Viewer", "role.operator": "Operator", "role.maintenance": "Maintenance",
    "role.safety": "Safety office", "role.leader": "Leader", "role.admin": "Admin",
    "source.alarm": "Alarm", "source.patrol": "Patrol", "source.inspection": "Inspection", "source.maintenance": "Maintenance", "source.staff_report": "Staff report",
    "error.http": "Request failed ({status}): {detail}", "error.network": "Cannot reach the service: {detail}",
    "error.format": "The service sent data in an unexpected form: {detail}",
    "login.e503": "The database is unavailable: retrying…",
    "outage.banner": "Database unavailable: alarms are still shown live and will be recorded once it is back",
    "unrec.mark": "Not yet recorded — database unavailable", "unrec.ack_later": "Can be acknowledged once recorded",
    "service.device": "Fire monitoring service", "actor.system": "System",
    "svc.ingest.storage_failing": "Database unavailable", "svc.ingest.unacked_backlog": "Received messages wait too long",
    "svc.ingest.stalled": "Data intake has stalled", "svc.ingest.broker_down": "Connection to the message server lost",
    "ikind.fire": "Fire", "ikind.gas": "Gas leak", "ikind.outage": "Communication outage", "ikind.supervisory": "Supervisory",
    "ikind.fault": "Device faults", "ikind.disabled": "Disabled points", "ikind.hazard": "Hazards",
    "istate.open": "Alarming", "istate.ended": "Alarms ended", "istate.closed": "Closed",
    "ver.pending": "Not verified", "ver.verifying": "Being verified", "ver.confirmed": "Real fire", "ver.false_alarm": "False alarm",
    "ver.test": "Test", "ver.confirmed_gas": "Leak confirmed",
    "cause.dust": "Dust or dirt", "cause.steam": "Steam or vapour", "cause.cooking": "Cooking fumes", "cause.works": "Building or hot work",
    "cause.device": "Device fault", "cause.human": "Set off by a person", "cause.other": "Other",
    "inc.unacked": "Not acknowledged", "inc.acked": "Acknowledged",
    "inc.ack": "Acknowledge", "inc.verify": "Verifying", "inc.verdict": "Verdict", "inc.call119": "119 called", "inc.reset": "Reset",
    "inc.ack_title": "Acknowledge incident", "inc.verify_title": "Someone goes to check", "inc.verdict_title": "Verdict",
    "inc.call119_title": "Record the 119 call", "inc.reset_title": "Reset fire alarms",
    "inc.ack_submit": "Acknowledge", "inc.verify_submit": "Verifying", "inc.verdict_submit": "Record verdict",
    "inc.call119_submit": "119 called", "inc.reset_submit": "Reset",
    "inc.as": "Acting as {who}", "inc.verifier": "Who went to check", "inc.verifier_hint": "e.g. fire station Wang Wu; empty: yourself",
    "inc.cause": "Cause of the false alarm", "inc.need_verdict": "Choose the verdict", "inc.need_cause": "Choose the cause of the false alarm",
    "inc.call119_confirm": "Records that 119 was called (now). Note what the fire service said in the note.",
    "inc.call119_due": "Call 119 now",
    "inc.zone_confirmed": "Zone confirmed: two detectors", "inc.elapsed": "Elapsed {t}",
    "inc.verify_left": "Verify within {t}", "inc.verify_overdue": "Verification overdue {t}",
    "inc.devices": "{d} devices · {n} alarms", "inc.active": "{n} still alarming", "inc.spread": "{z} zones on {f} floors",
    "inc.first": "First {when}", "inc.alarms": "Alarms ({n})",
    "inc.acked_by": "Acknowledged by {who} at {when}", "inc.verifying_by": "{who} went to check ({when})",
    "inc.verdict_by": "Verdict: {v} ({who}, {when})", "inc.called_119": "119 called at {when} ({who})",
    "inc.reset_by": "Reset by {who} at {when}",
    "sound.blocked": "The browser has not allowed the alarm sound to play", "sound.enable": "Click to turn on the alarm sound",
    "type.smoke.alarm": "Smoke fire alarm", "type.smoke.pre_alarm": "Smoke pre-alarm", "type.gas.alarm": "Combustible gas alarm",
    "type.zone.fire_confirmed": "Zone fire confirmed", "type.device.offline": "Device offline",
    "type.device.outage": "Area communication outage", "type.device.fault": "Device fault", "type.device.tamper": "Device tamper",
    "type.device.alarm": "Device alarm", "type.device.low_battery": "Battery low", "type.device.weak_signal": "Weak signal",
    "type.device.clock_wrong": "Device clock wrong", "type.device.reset": "Device reset", "type.sensor.flapping": "Sensor flapping",
    "type.device.supervisory": "Supervisory signal", "type.device.disabled": "Point disabled", "type.device.power_fault": "Power fault",
    "type.device.unregistered": "Unregistered point reported", "type.unknown": "Alarm",
    "ch.smoke": "Smoke", "ch.temp": "Temperature", "ch.lel": "Gas concentration", "ch.current": "Current",
    "ch.residual_current": "Residual current", "ch.temp_l1": "L1 temperature", "ch.temp_l2": "L2 temperature", "ch.temp_l3": "L3 temperature",
    "ch.temp_n": "N temperature", "ch.open": "Door", "ch.pressure": "Pressure", "ch.level": "Level",
    "lvl.pre_alarm": "pre-alarm", "lvl.alarm": "alarm", "lvl.hot": "hot", "lvl.overload": "overload", "lvl.out_of_range": "out of range",
    "lvl.stuck": "stuck", "lvl.rising": "rising", "lvl.held_open": "held open", "lvl.low": "low", "lvl.very_low": "very low",
    "lvl.high": "high", "lvl.sudden_drop": "sudden drop", "lvl.slow_leak": "slow fall (leak?)", "lvl.jump": "jump",
    "lvl.rate_of_rise": "rate-of-rise alarm", "lvl.rise": "rise alarm", "lvl.dirty_chamber": "dirty chamber", "lvl.unusual": "unusual",
    "lvl.level1": "low-level alarm", "lvl.level2": "high-level alarm",
    "dkind.smoke": "Smoke detector", "dkind.heat": "Heat detector", "dkind.smoke_heat": "Smoke and heat detector",
    "dkind.water_pressure": "Water pressure", "dkind.water_level": "Water level", "dkind.electrical_fire": "Electrical fire monitor",
    "dkind.combustible_gas": "Gas detector", "dkind.oxygen_pressure": "Oxygen pressure", "dkind.fire_door": "Fire door",
    "dkind.charging_socket": "Charging socket", "dkind.transmission_device": "Transmission device",
    "dkind.fire_alarm_panel": "Fire alarm panel", "dkind.manual_call_point": "Manual call point", "dkind.module": "Input/output module",
    "sys.fire_alarm": "Fire alarm system", "sys.combustible_gas": "Combustible gas system", "sys.electrical_fire": "Electrical fire system",
    "sys.water_supply": "Fire water supply", "sys.medical_gas": "Medical gas", "sys.fire_door": "Fire door monitoring",
  },
};

const CATEGORIES = ["fire", "pre_alarm", "supervisory", "fault", "disabled", "hazard"];
const ACTIVE = new Set(["active_unacknowledged", "active_acknowledged"]);
const ROLES = ["viewer", "operator", "maintenance", "safety", "leader", "admin"];
const TREE_KINDS = new Set(["site", "building", "floor", "zone"]); // rooms show in the zone's device list
const FALLBACK_POLL_MS = 60000; // the WebSocket drives the board; this only heals a silent gap
const store = {
  get(key, fallback) { try { return localStorage.getItem(key) ?? fallback; } catch { return fallback; } },
  set(key, value) { try { localStorage.setItem(key, value); } catch { /* private mode: not kept */ } },
  remove(key) { try { localStorage.removeItem(key); } catch { /* nothing kept */ } },
};

let lang = store.get("fw.lang", "zh") === "en" ? "en" : "zh";

function t(key, vars) {
  let s = I18N[lang][key] ?? I18N.zh[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}
const catLabel = (c) => (CATEGORIES.includes(c) || c === "normal" ? t(`cat.${c}`) : String(c));
const label = (prefix, v) => (I18N.zh[`${prefix}.${v}`] ? t(`${prefix}.${v}`) : String(v ?? ""));

// --- DOM helpers: text only -----------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** Build an element: props are class, text, title, dataset, attrs, on; children are nodes or text. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  if (props.title) node.title = String(props.title);
  for (const [k, v] of Object.entries(props.dataset || {})) node.dataset[k] = String(v);
  for (const [k, v] of Object.entries(props.attrs || {})) node.setAttribute(k, String(v));
  for (const [k, v] of Object.entries(props.on || {})) node.addEventListener(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}
const clear = (node) => { node.replaceChildren(); return node; };

// --- API access -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status = 0, detail = "", retryAfter = 0) {
    super(message); this.status = status; this.detail = detail; this.retryAfter = retryAfter;
  }
}
/** The session ended (401): the sign-in screen is already showing, nothing more to report. */
class SignedOut extends ApiError {}

function authHeaders() {
  const token = store.get("fw.token", "");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function problemText(body, fallback) {
  if (body && typeof body === "object") {
    const d = body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d.map((e) => `${Array.isArray(e.loc) ? e.loc.join(".") : ""}: ${e.msg ?? ""}`).join("; ");
    }
    if (typeof body.title === "string") return body.title;
  }
  return fallback;
}

/** A response that is not ok as an ApiError; a 401 also ends the session (the sign-in screen). */
async function failure(resp, path, { signIn = false, token = "" } = {}) {
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  const detail = problemText(data, text.slice(0, 200) || resp.statusText);
  if (resp.status === 401 && !signIn) {
    if (token === store.get("fw.token", "")) sessionEnded(detail);
    return new SignedOut(t("login.expired"), 401, detail);
  }
  const retryAfter = Number(resp.headers.get("Retry-After")) || 0;
  const err = new ApiError(t("error.http", { status: resp.status, detail }), resp.status, detail, retryAfter);
  err.problem = data; // the whole problem body: a view may list its `errors` one by one
  return err;
}

/** The raw response of a signed-in request (a Bearer header when there is a token). */
async function request(path, { method = "GET", body, params, signIn = false, accept = "application/json" } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const token = store.get("fw.token", "");
  const headers = { Accept: accept, ...(signIn ? {} : authHeaders()) };
  let payload;
  if (body instanceof FormData) payload = body; // the browser sets the multipart boundary
  else if (body instanceof Blob) { headers["Content-Type"] = body.type; payload = body; } // a file as it is
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: payload });
  } catch (err) {
    throw new ApiError(t("error.network", { detail: err.message || err }));
  }
  if (!resp.ok) throw await failure(resp, path, { signIn, token });
  return resp;
}

/** JSON from the service, or an ApiError with a message a person can read. */
async function api(path, options = {}) {
  const resp = await request(path, options);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (data === null && text) throw new ApiError(t("error.format", { detail: `${path}: not JSON` }));
  return data;
}

/** `items` of a page, checked: a malformed page is an error, not a crash further down. */
function itemsOf(page, what) {
  if (!page || !Array.isArray(page.items)) throw new ApiError(t("error.format", { detail: what }));
  return page.items;
}

async function allPages(path, params) {
  const out = [];
  for (let offset = 0; offset < 100000; offset += 1000) {
    const page = await api(path, { params: { ...params, limit: 1000, offset } });
    const items = itemsOf(page, path);
    out.push(...items);
    if (items.length < 1000 || out.length >= page.total) break;
  }
  return out;
}

function showError(err) {
  if (err instanceof SignedOut) return; // the sign-in screen says it
  console.error(err);
  $("error-text").textContent = err instanceof ApiError ? err.message : `${err && err.message ? err.message : err}`;
  $("error").hidden = false;
}
const hideError = () => { $("error").hidden = true; };

/** The state store (database) is down: the service answers 503 with Retry-After (api/unavailable.py). */
const isOutage = (err) => err instanceof ApiError && err.status === 503 && err.retryAfter > 0;

/** Run an async render step; whatever fails is reported, the page goes on. A 503 of the state store
 * is not an error to dismiss: the banner says it and the step is tried again after Retry-After. */
async function guarded(fn) {
  try { await fn(); } catch (err) {
    if (isOutage(err)) { outage.viewFailed = true; storageDown(err.retryAfter); } else showError(err);
  }
}

// --- the state store down: a banner, and retries after Retry-After ---------------------------------
// While the database fails, alarms still arrive live as unrecorded (`recorded: false`) transitions
// and from /api/v1/alarms/unrecorded; the lists answer 503 with Retry-After. The board keeps working
// from those; the banner shows until the lists answer again and the service says the store records.

const outage = { failing: false, retryMs: 5000, timer: null, viewFailed: false };

function renderOutage() {
  $("outage").hidden = !(outage.failing && session.me);
}

function storageDown(retryAfterS = 0) {
  outage.failing = true;
  if (retryAfterS > 0) outage.retryMs = Math.min(Math.max(retryAfterS, 1), 60) * 1000;
  renderOutage();
  if (!outage.timer) outage.timer = setTimeout(outageRetry, outage.retryMs);
}

function storageUp() {
  outage.failing = false;
  clearTimeout(outage.timer);
  outage.timer = null;
  renderOutage();
}

async function outageRetry() {
  outage.timer = null;
  if (!session.me || !outage.failing) return;
  await guarded(refreshBoard);
  if (outage.viewFailed && route.view !== "board") { outage.viewFailed = false; await guarded(refreshCurrent); }
  if (outage.failing && !outage.timer) outage.timer = setTimeout(outageRetry, outage.retryMs);
}

// --- signing in -----------------------------------------------------------------------------------
// The token lives in localStorage (fw.token) and goes out as `Authorization: Bearer`; the WebSocket,
// which cannot carry headers, sends it as `access_token`. Any 401 ends the session here: the page
// goes back to its sign-in screen. What the user may do follows their roles (GET /api/v1/auth/me)
// and the role sets the API declares (/console/roles.json); the API checks every call anyway.

const session = { me: null, started: false, roleSets: null, people: new Map() };

const whoName = () => (session.me ? session.me.display_name || session.me.name : "");
const SYSTEM_ACTOR = "firewatch"; // the service's own steps (alarms/service.py SYSTEM_ACTOR)
/** A person as a history names them: their display name (保卫科 周九) where they have one. */
function person(name) {
  if (typeof name !== "string" || !name) return "—";
  if (name === SYSTEM_ACTOR) return t("actor.system");
  return session.people.get(name) || name;
}

async function loadPeople() {
  try {
    const names = await api("/console/people.json");
    if (names && typeof names === "object") session.people = new Map(Object.entries(names).filter(([, v]) => typeof v === "string"));
  } catch (err) { if (err instanceof SignedOut) throw err; /* user names, then */ }
}
const heldRoles = () => ROLES.filter((r) => session.me && Array.isArray(session.me.roles) && session.me.roles.includes(r));

function mayHandleAlarms() {
  const allowed = session.roleSets ? session.roleSets.alarm_handling : ["operator", "safety", "admin"];
  return heldRoles().some((r) => r === "admin" || allowed.includes(r));
}

async function loadRoleSets() {
  if (session.roleSets) return;
  try {
    const sets = await api("/console/roles.json");
    if (sets && Array.isArray(sets.alarm_handling) && Array.isArray(sets.ticket_work)) session.roleSets = sets;
  } catch (err) { if (err instanceof SignedOut) throw err; /* the built-in defaults above */ }
}

function setSignedIn(on) {
  document.body.classList.toggle("signed-out", !on);
  $("login").hidden = on;
  for (const id of ["app", "tabs", "session", "conn"]) $(id).hidden = !on;
}

/** Back to the sign-in screen, with a reason. */
function showSignIn(message = "") {
  session.me = null;
  setSignedIn(false);
  hideError();
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  stopLive();
  storageUp();
  sound.update(false);
  sound.setBlocked(false);
  $("login-error").textContent = message;
  $("login-password").value = "";
  $("login-user").focus();
}

/** A 401: the token is unknown, expired or revoked. */
function sessionEnded(detail) {
  store.remove("fw.token");
  if (!session.me && !$("login").hidden) return; // already there: keep what the user typed
  showSignIn(detail ? `${t("login.expired")} (${detail})` : t("login.expired"));
}

function renderWho() {
  if (!session.me) return;
  $("who").textContent = `${whoName()} · ${heldRoles().map((r) => t(`role.${r}`)).join(lang === "zh" ? "、" : ", ")}`;
  $("who").title = session.me.name;
  $("who").dataset.user = session.me.name;
}

async function enterApp(me) {
  if (!me || typeof me.name !== "string" || !Array.isArray(me.roles)) throw new ApiError(t("error.format", { detail: "auth/me" }));
  session.me = me;
  clear($("role"));
  setSignedIn(true);
  renderWho();
  renderOutage();
  await loadRoleSets();
  await loadPeople();
  fillRoles();
  showExtraTabs();
  if (!session.started) { session.started = true; startTimers(); }
  startLive();
  sound.check(); // a wall screen reloaded without a click may not play: the banner says so
  if (!location.hash) {
    // Maintenance staff who do not handle alarms work from their tickets (often on a phone): they land
    // on 我的整改单; everyone who handles alarms lands on the fire board.
    const ticketsFirst = landsOnTickets();
    $("tickets-mine").checked = ticketsFirst;
    location.replace(ticketsFirst ? "#/tickets" : "#/board");
  }
  await onRoute();
}

/** Holds maintenance and none of the roles that handle alarms (operator, safety, admin). */
function landsOnTickets() {
  return heldRoles().includes("maintenance") && !mayHandleAlarms();
}

async function submitLogin(ev) {
  ev.preventDefault();
  const username = $("login-user").value.trim();
  const password = $("login-password").value;
  if (!username || !password) { $("login-error").textContent = t("login.need"); return; }
  $("login-submit").disabled = true;
  $("login-error").textContent = "";
  try {
    const out = await api("/api/v1/auth/login", { method: "POST", body: { username, password }, signIn: true });
    if (!out || typeof out.token !== "string" || !out.user) throw new ApiError(t("error.format", { detail: "login" }));
    store.set("fw.token", out.token);
    $("login-password").value = "";
    await enterApp(out.user);
  } catch (err) {
    const key = { 401: "login.e401", 403: "login.e403", 429: "login.e429" }[err.status];
    if (isOutage(err)) $("login-error").textContent = t("login.e503");
    else $("login-error").textContent = key ? `${t(key)} (${err.detail})` : err.message || String(err);
  } finally {
    $("login-submit").disabled = false;
  }
}

async function signOut() {
  try {
    await request("/api/v1/auth/logout", { method: "POST" });
  } catch { /* ended anyway: the token is forgotten here */ }
  store.remove("fw.token");
  showSignIn(t("login.signed_out"));
}

/** On load: the stored token's user, or the sign-in screen. */
async function boot() {
  if (!store.get("fw.token", "")) { showSignIn(); return; }
  try {
    await enterApp(await api("/api/v1/auth/me"));
  } catch (err) {
    if (err instanceof SignedOut) return;
    if (isOutage(err)) { // the token cannot be checked while the database is down: try again
      showSignIn(t("login.e503"));
      setTimeout(() => { if (!session.me && store.get("fw.token", "")) boot(); }, err.retryAfter * 1000);
      return;
    }
    showSignIn(err.message || String(err));
  }
}

// --- the service's clock --------------------------------------------------------------------------
// Simulations run the service's clock faster than real time; times and windows follow its clock.

const clock = { t0: Date.now() / 1000, w0: Date.now() / 1000, scale: 1 };
const serverNow = () => clock.t0 + (Date.now() / 1000 - clock.w0) * clock.scale;

async function syncClock() {
  try {
    const h = await api("/healthz");
    if (h && typeof h.time === "number") {
      clock.t0 = h.time; clock.w0 = Date.now() / 1000;
      clock.scale = typeof h.time_scale === "number" && h.time_scale > 0 ? h.time_scale : 1;
    }
  } catch { /* keep the local clock: the header shows the connection state anyway */ }
}

const pad = (n) => String(n).padStart(2, "0");
function fmtTime(ts, withDate = true) {
  if (typeof ts !== "number" || !isFinite(ts)) return "—";
  const d = new Date(ts * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
}
function fmtValue(v) {
  if (typeof v !== "number" || !isFinite(v)) return "—";
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString();
}

// --- places (names for paths) ---------------------------------------------------------------------

const places = { list: [], byPath: new Map(), loaded: false };

async function loadPlaces() {
  let list;
  try {
    list = await allPages("/api/v1/places");
  } catch (err) {
    // The database down (503): name places from the names kept at the last load, so a reload
    // during the outage still says where an alarm is, not its path's ids. Tried again next time.
    if (isOutage(err) && !places.byPath.size) places.byPath = cachedPlaceNames();
    throw err;
  }
  places.list = list;
  places.byPath = new Map(list.map((p) => [p.path, p]));
  places.loaded = true;
  store.set("fw.places", JSON.stringify(list.map((p) => [p.path, p.name || ""])));
}

function cachedPlaceNames() {
  try {
    const kept = JSON.parse(store.get("fw.places", "[]") || "[]");
    return new Map(Array.isArray(kept) ? kept.filter(Array.isArray).map(([path, name]) => [path, { path, name }]) : []);
  } catch { return new Map(); }
}

/** The names along a path, each without what an enclosing name already said at its start ("1F 门诊大厅"
 * on floor "1F" is "门诊大厅"), as core/place_label.py says them; a name left empty is left out. */
function saidOnce(names) {
  const out = [];
  for (const name of names) {
    let rest = String(name).trim();
    for (let stripped = true; stripped;) { // "2F 西区病区走廊" under "2F" and "西区病区": both go
      stripped = false;
      for (const outer of out) {
        if (rest.startsWith(outer)) { rest = rest.slice(outer.length).replace(/^[\s·/-]+/, ""); stripped = true; }
      }
    }
    if (rest) out.push(rest);
  }
  return out;
}
/** The names of a path's places below the site, from the outside in (a path's id where unnamed). */
function pathNames(path) {
  const parts = path.split("/");
  const names = [];
  for (let i = 2; i <= parts.length; i++) {
    const p = places.byPath.get(parts.slice(0, i).join("/"));
    names.push(p && p.name ? p.name : parts[i - 1]);
  }
  return names;
}

/** "1号楼 / 3F / 2区 / 301病房" for a path, falling back to the path's ids. */
function placeName(path) {
  if (typeof path !== "string" || !path) return "—";
  const parts = path.split("/");
  if (parts.length === 1) { const site = places.byPath.get(path); return site && site.name ? site.name : path; }
  return saidOnce(pathNames(path)).join(" / ") || path;
}

// --- the incident board ---------------------------------------------------------------------------

// One card per incident (火情/事件: alarms grouped by place and time, alarms/incidents.py), from GET
// /api/v1/incidents?open=true, its alarms listed inside; plus one card per unrecorded alarm (the
// stream's `recorded: false` transitions and GET /api/v1/alarms/unrecorded: no incident yet). An
// unrecorded alarm gives way to the recorded one of the same (device, alarm type) in an incident,
// unless that one is no longer active while the unrecorded one is (raised again while the database
// was down: the newer news shows). Gas incidents go on the gas board, every other kind on the fire
// board. The WebSocket's incident steps update a card in place (the latest step per incident), and
// the lists are re-read after each burst of messages.
const board = {
  fire: [], gas: [],
  incidents: new Map(), // id -> incident (with its alarms, from the last list read)
  lastEvent: new Map(), // id -> event_id of the latest incident step applied
  liveAt: new Map(), // id -> live.tick when a step was applied (a list read begun before it is older)
  unrecorded: new Map(),
  recordedAt: new Map(), // (device, alarm type) -> live.tick when the stream said it was recorded
  unrecTimer: null,
  expanded: new Set(), // incidents whose alarm list is open
  reads: 0, // list reads begun
  applied: 0, // the latest list read applied (by when it began)
};

const alarmKey = (a) => `${a.device_id}\u0000${a.alarm_type}`;
const isUnrecorded = (a) => a.recorded === false || a.id === null || a.id === undefined;
const isServiceAlarm = (a) => typeof a.device_id === "string" && a.device_id.startsWith("service:");
const catRank = (c) => (CATEGORIES.includes(c) ? CATEGORIES.indexOf(c) : CATEGORIES.length);
const ZONE_CONFIRMED = "zone.fire_confirmed";
const VERIFIED_KINDS = new Set(["fire", "gas"]); // verification, the verdict and the 119 call
const isLatched = (a) => a.category === "fire" && ACTIVE.has(a.state);
const isUnacked = (a) => a.state === "active_unacknowledged" || a.state === "cleared_unacknowledged";
const incUnacked = (i) => i.acked_ts === null || i.acked_ts === undefined;
const incAlarms = (i) => (Array.isArray(i.alarms) ? i.alarms : []);
const incDecided = (i) => ["confirmed", "false_alarm", "test"].includes(i.verification);
/** A confirmed fire whose 119 call is not recorded (the API's `call_119_due`; the stream's
 * incident snapshot does not carry it, so the page applies the same rule). */
const call119Due = (i) => i.verification === "confirmed" && (i.call_119_ts === null || i.call_119_ts === undefined);
const hasLatchedFire = (i) => incAlarms(i).some(isLatched);
const isGasIncident = (i) => i.kind === "gas";
/** The incident's place, named as the alarm cards name theirs (the API's `place_name` until the
 * page has the place names). */
const incPlace = (i) => (places.byPath.has(i.place) ? placeName(i.place) : i.place_name || placeName(i.place));
/** An alarm's place below its incident's ("2F 西区走廊" under the zone), or all of it. */
function placeBelow(path, under) {
  if (typeof path !== "string" || !path) return "";
  if (!under || path === under) return "";
  if (!path.startsWith(`${under}/`)) return placeName(path);
  const above = saidOnce(pathNames(under));
  return saidOnce([...pathNames(under), ...pathNames(path).slice(pathNames(under).length)]).slice(above.length).join(" / ");
}

/** The board's order, the API's: unacknowledged first, then by category (fire first), then the
 * oldest first; unrecorded alarm cards take the same rule. */
function boardKey(x) {
  if (x.inc) return [incUnacked(x.inc) ? 0 : 1, catRank(x.inc.category), x.inc.first_ts, x.inc.id];
  return [isUnacked(x.alarm) ? 0 : 1, catRank(x.alarm.category), x.alarm.first_ts, 0];
}
function compareBoard(a, b) {
  const ka = boardKey(a), kb = boardKey(b);
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
  return 0;
}

function mergeBoard() {
  const recorded = new Map();
  for (const i of board.incidents.values()) for (const a of incAlarms(i)) if (a.state !== "closed") recorded.set(alarmKey(a), a);
  const items = { fire: [], gas: [] };
  for (const [key, u] of board.unrecorded) {
    const r = recorded.get(key);
    if (r && (ACTIVE.has(r.state) || !ACTIVE.has(u.state))) continue; // the recorded alarm wins
    items[u.system === "combustible_gas" ? "gas" : "fire"].push({ alarm: u });
  }
  for (const i of board.incidents.values()) {
    if (i.state === "closed") continue;
    items[isGasIncident(i) ? "gas" : "fire"].push({ inc: i });
  }
  board.fire = items.fire.sort(compareBoard);
  board.gas = items.gas.sort(compareBoard);
}

/** An unrecorded alarm from the stream or /alarms/unrecorded, checked enough to draw a card. */
function unrecordedAlarm(a) {
  if (!a || typeof a !== "object" || typeof a.device_id !== "string" || typeof a.alarm_type !== "string") return null;
  return { ...a, id: null, recorded: false };
}

/** An incident from the API or the stream, checked enough to draw a card. */
function validIncident(i) {
  return i && typeof i === "object" && typeof i.id === "number" && typeof i.kind === "string" && typeof i.state === "string";
}

/** Per category: the open incidents and the active alarms (a board's items, or plain alarms). */
function countChips(node, items) {
  clear(node);
  const cats = items.map((x) => {
    if (x.inc) return x.inc.state === "open" ? x.inc.category : null;
    const a = x.alarm || x;
    return ACTIVE.has(a.state) ? a.category : null;
  });
  for (const c of CATEGORIES) {
    const n = cats.filter((k) => k === c).length;
    node.append(el("span", { class: `count cat-${c}${n ? "" : " zero"}`, dataset: { category: c, n } },
      el("span", { class: "dot" }), ` ${catLabel(c)}`, el("b", { text: n })));
  }
}

/** The buttons a signed-in user may use on an alarm: none for a role that may not handle alarms,
 * none for an unrecorded alarm (no id yet to act on). Shelving is never offered for a fire alarm
 * (the API refuses it, 409, anyway). On the board an alarm is acknowledged and reset with its
 * incident (`inBoard`): only clear, shelve and unshelve are its own. */
function alarmButtons(a, inBoard = false) {
  if (!mayHandleAlarms() || a.state === "closed" || isUnrecorded(a)) return [];
  const out = [];
  const button = (role, text, onClick, cls = "minor") => el("button", { class: cls, text, dataset: { role }, on: { click: onClick } });
  if (isUnacked(a) && !inBoard) out.push(button("ack", t("ack.button"), () => openAck(a), "primary"));
  // A fire alarm latches until reset (GB 4717): it offers 复位, never clear (the API refuses that).
  if (isLatched(a)) { if (!inBoard) out.push(button("reset", t("reset.button"), () => openAlarmAction("reset", a))); }
  else if (ACTIVE.has(a.state)) out.push(button("clear", t("clear.button"), () => openAlarmAction("clear", a)));
  if (a.shelved_until) out.push(button("unshelve", t("unshelve.button"), () => openAlarmAction("unshelve", a)));
  else if (a.category !== "fire") out.push(button("shelve", t("shelve.button"), () => openAlarmAction("shelve", a)));
  return out;
}

/** What an alarm is: its type (named where the page knows it) and the detector's detail; the
 * service's own fault alarms by name (their detail, the technical cause, on hover). */
function alarmWhatText(a) {
  if (isServiceAlarm(a) && I18N.zh[`svc.${a.alarm_type}`]) return t(`svc.${a.alarm_type}`);
  const type = alarmTypeText(a);
  const detail = detailText(a);
  return detail ? `${type} — ${detail}` : type;
}
/** The alarm's type as the service names it for people (`type_zh`/`type_en`), else from the table. */
function alarmTypeText(a) {
  const named = lang === "zh" ? a.type_zh : a.type_en;
  return typeof named === "string" && named ? named : typeLabel(a.alarm_type);
}
/** The detail rendered for people (`detail_zh`/`detail_en`, alarms/describe.py). The raw `detail` is
 * the detector's technical English: never shown in Chinese, shown in English only when the service
 * sent no rendering (an alarm straight from the live stream). */
function detailText(a) {
  if (lang === "zh") return typeof a.detail_zh === "string" ? a.detail_zh : "";
  return typeof a.detail_en === "string" ? a.detail_en : a.detail || "";
}
/** An alarm type in words: named outright, or as its channel and level ("temp.hot": 温度过热); else
 * as the service sends it. */
function typeLabel(type) {
  const s = String(type ?? "");
  if (I18N.zh[`type.${s}`]) return t(`type.${s}`);
  const [channel, level] = [s.slice(0, s.indexOf(".")), s.slice(s.indexOf(".") + 1)];
  if (s.includes(".") && I18N.zh[`ch.${channel}`] && I18N.zh[`lvl.${level}`]) {
    return `${t(`ch.${channel}`)}${lang === "zh" ? "" : " "}${t(`lvl.${level}`)}`;
  }
  return lang === "zh" ? t("type.unknown") : s;
}

/** A card of its own for an unrecorded alarm (no incident yet). */
function alarmCard(a) {
  const unacked = isUnacked(a);
  const unrecorded = isUnrecorded(a);
  const service = isServiceAlarm(a);
  const cls = `card cat-${CATEGORIES.includes(a.category) ? a.category : "hazard"}${unacked ? " unacked" : ""}${ACTIVE.has(a.state) ? "" : " cleared"}${a.shelved_until ? " shelved" : ""}${unrecorded ? " unrecorded" : ""}`;
  const side = el("div", { class: "side" },
    el("span", { class: "state", text: label("state", a.state), dataset: { role: "state" } }));
  const buttons = alarmButtons(a);
  if (buttons.length) side.append(el("div", { class: "btns" }, ...buttons));
  if (unrecorded && mayHandleAlarms()) side.append(el("span", { class: "later", text: t("unrec.ack_later"), dataset: { role: "ack-later" } }));
  if (!service) side.append(el("a", { class: "link", text: t("device.button"), attrs: { href: `#/device/${encodeURIComponent(a.device_id)}` }, dataset: { role: "device" } }));
  const meta = [
    service ? `${t("device.system")} ${t("service.device")}` : `${t("alarm.device")} ${a.device_id}`,
    a.department ? `${t("alarm.dept")} ${a.department}` : null,
    `${t("alarm.first")} ${fmtTime(a.first_ts)}`,
    a.occurrences > 1 ? `×${a.occurrences} ${t("alarm.times")}` : null,
    a.value !== null && a.value !== undefined ? `${t("alarm.value")} ${fmtValue(a.value)}` : null,
  ].filter(Boolean).join(" · ");
  const main = el("div", { class: "main" },
    unrecorded ? el("div", { class: "unrec", text: t("unrec.mark"), dataset: { role: "unrecorded" } }) : null,
    a.drill_id ? el("span", { class: "flag drill", text: t("drill.badge"), dataset: { role: "drill", drillId: a.drill_id } }) : null,
    el("div", { class: "where", text: placeName(a.place) }),
    el("div", { class: "what", text: alarmWhatText(a), title: service ? detailText(a) : "" }),
    el("div", { class: "meta", text: meta }));
  const data = { category: a.category, state: a.state, deviceId: a.device_id, alarmType: a.alarm_type };
  if (unrecorded) data.unrecorded = "true"; else data.alarmId = a.id;
  return el("li", { class: cls, dataset: data },
    el("span", { class: "badge", text: catLabel(a.category) }), main, side);
}

/** One alarm of an incident, a line of its card's list. */
function alarmRow(a, under) {
  const service = isServiceAlarm(a);
  const cat = CATEGORIES.includes(a.category) ? a.category : "hazard";
  const who = service ? t("service.device") : a.device_id;
  const bits = [
    `${fmtTime(a.first_ts, false)}`,
    a.occurrences > 1 ? `×${a.occurrences}` : null,
    a.value !== null && a.value !== undefined ? `${t("alarm.value")} ${fmtValue(a.value)}` : null,
  ].filter(Boolean).join(" · ");
  const row = el("li", { class: `alarm${ACTIVE.has(a.state) ? "" : " cleared"}${a.shelved_until ? " shelved" : ""}`,
    dataset: { alarmId: a.id, deviceId: a.device_id, alarmType: a.alarm_type, category: a.category, state: a.state } },
    el("span", { class: `pill cat-${cat}`, text: catLabel(a.category) }),
    el("span", { class: "a-main" },
      el("span", { class: "a-where", text: [placeBelow(a.place, under), who].filter(Boolean).join(" · ") }),
      el("span", { class: "a-what", text: alarmWhatText(a), title: service ? detailText(a) : "" })),
    el("span", { class: "a-meta", text: bits }),
    el("span", { class: "a-state", text: label("state", a.state), dataset: { role: "state" } }));
  const tools = el("span", { class: "btns" }, ...alarmButtons(a, true));
  if (!service) tools.append(el("a", { class: "link", text: t("device.button"), attrs: { href: `#/device/${encodeURIComponent(a.device_id)}` }, dataset: { role: "device" } }));
  row.append(tools);
  if (a.shelved_until) {
    row.append(el("span", { class: "shelf", dataset: { role: "shelved" },
      text: t("shelve.until", { when: fmtTime(a.shelved_until), who: person(a.shelved_by), note: a.shelve_note || "" }) }));
  }
  return row;
}

/** The buttons of an incident: 受理, 核实中, 核实结果, 已拨打119, 复位, each while it applies, and only
 * for those who may handle alarms. */
function incidentButtons(i) {
  if (!mayHandleAlarms() || i.state === "closed") return [];
  const out = [];
  const button = (role, text, cls = "minor") => el("button", { class: cls, text, dataset: { role }, on: { click: () => openIncidentAction(role, i) } });
  if (incUnacked(i)) out.push(button("ack", t("inc.ack"), "primary"));
  if (VERIFIED_KINDS.has(i.kind)) {
    if (i.call_119_ts === null || i.call_119_ts === undefined) out.push(button("call119", t("inc.call119"), call119Due(i) ? "urgent" : "minor"));
    if (i.verification === "pending") out.push(button("verify", t("inc.verify")));
    if (!incDecided(i)) out.push(button("verdict", t("inc.verdict")));
  }
  if (hasLatchedFire(i)) out.push(button("reset", t("inc.reset")));
  if (i.drill_id) out.push(button("drill", t("inc.drill"), "urgent")); // 这是真实火警 (docs/drills.md)
  return out;
}

const verdictLabel = (i, v) => (v === "confirmed" && i.kind === "gas" ? t("ver.confirmed_gas") : label("ver", v));

function fmtDur(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}:${pad(m)}:${pad(sec)}` : `${pad(m)}:${pad(sec)}`;
}

/** The clocks on the cards (elapsed time, the verification countdown), from the service's clock;
 * run every second without redrawing the cards. */
function tickClocks() {
  const now = serverNow();
  for (const node of document.querySelectorAll('[data-role="elapsed"]')) {
    node.textContent = t("inc.elapsed", { t: fmtDur(now - Number(node.dataset.since)) });
  }
  for (const node of document.querySelectorAll('[data-role="verify-clock"]')) {
    const due = Number(node.dataset.due);
    const over = node.dataset.overdueSince ? now - Number(node.dataset.overdueSince) : now - due;
    const overdue = Boolean(node.dataset.overdueSince) || now >= due;
    node.classList.toggle("overdue", overdue);
    node.dataset.overdue = String(overdue);
    node.textContent = overdue ? t("inc.verify_overdue", { t: fmtDur(over) }) : t("inc.verify_left", { t: fmtDur(due - now) });
  }
}

function incidentCard(i) {
  const unacked = incUnacked(i);
  const cat = CATEGORIES.includes(i.category) ? i.category : "hazard";
  const alarms = incAlarms(i);
  // The zone's confirmation is the badge, not a line; the active alarms first, each in the order
  // it joined.
  const rows = alarms.filter((a) => a.alarm_type !== ZONE_CONFIRMED)
    .sort((a, b) => Number(ACTIVE.has(b.state)) - Number(ACTIVE.has(a.state)) || a.id - b.id);
  const cls = `card incident cat-${cat}${unacked ? " unacked" : ""}${i.state === "open" ? "" : " cleared"}${call119Due(i) ? " due119" : ""}`;
  const open = i.state === "open";
  // What it is and where, with the zone's two-detector confirmation as a badge.
  const head = el("div", { class: "where", text: incPlace(i), dataset: { role: "place" } });
  const flags = el("div", { class: "flags" },
    el("span", { class: "flag kind", text: label("ikind", i.kind), dataset: { role: "kind" } }));
  if (i.drill_id) flags.prepend(el("span", { class: "flag drill", text: t("drill.badge"), dataset: { role: "drill", drillId: i.drill_id } }));
  if (i.zone_confirmed_ts) {
    const zc = alarms.find((a) => a.alarm_type === ZONE_CONFIRMED);
    flags.append(el("span", { class: "flag zone", text: t("inc.zone_confirmed"), dataset: { role: "zone-confirmed" },
      title: `${fmtTime(i.zone_confirmed_ts)}${zc && detailText(zc) ? ` — ${detailText(zc)}` : ""}` }));
  }
  if (VERIFIED_KINDS.has(i.kind)) {
    flags.append(el("span", { class: `flag ver ver-${i.verification}`, text: verdictLabel(i, i.verification), dataset: { role: "verification", verification: i.verification } }));
  }
  if (open && VERIFIED_KINDS.has(i.kind)) flags.append(el("span", { class: "flag clock", dataset: { role: "elapsed", since: i.first_ts } }));
  if (VERIFIED_KINDS.has(i.kind) && !incDecided(i) && (i.verify_due_ts || i.verify_overdue_ts)) {
    const node = el("span", { class: "flag clock verify", dataset: { role: "verify-clock", due: i.verify_due_ts || i.verify_overdue_ts } });
    if (!i.verify_due_ts && i.verify_overdue_ts) node.dataset.overdueSince = String(i.verify_overdue_ts);
    flags.append(node);
  }
  const main = el("div", { class: "main" }, head, flags);
  if (call119Due(i)) main.append(el("div", { class: "call119", text: t("inc.call119_due"), dataset: { role: "call119-due" } }));
  const spread = i.zones && i.zones.length > 1 ? t("inc.spread", { z: i.zones.length, f: (i.floors || []).length || 1 }) : null;
  main.append(el("div", { class: "meta", dataset: { role: "summary" }, text: [
    t("inc.devices", { d: i.device_count, n: i.alarm_count }),
    i.active_count !== i.alarm_count ? t("inc.active", { n: i.active_count }) : null,
    spread,
    t("inc.first", { when: fmtTime(i.first_ts) }),
  ].filter(Boolean).join(" · ") }));
  // Who did what so far.
  const steps = [];
  if (i.acked_ts) steps.push(["acked", t("inc.acked_by", { who: person(i.acked_by), when: fmtTime(i.acked_ts) }) + (i.ack_note ? ` — ${i.ack_note}` : "")]);
  if (i.verification === "verifying") steps.push(["verifying", t("inc.verifying_by", { who: i.verifier || "—", when: fmtTime(i.verifying_ts) })]);
  if (incDecided(i)) {
    const v = verdictLabel(i, i.verification) + (i.cause ? `（${label("cause", i.cause)}）` : "");
    steps.push(["verdict", t("inc.verdict_by", { v, who: person(i.verdict_by), when: fmtTime(i.verdict_ts) }) + (i.verdict_note ? ` — ${i.verdict_note}` : "")]);
  }
  if (i.call_119_ts) steps.push(["called119", t("inc.called_119", { who: person(i.call_119_by), when: fmtTime(i.call_119_ts) }) + (i.call_119_note ? ` — ${i.call_119_note}` : "")]);
  if (i.reset_ts) steps.push(["reset", t("inc.reset_by", { who: person(i.reset_by), when: fmtTime(i.reset_ts) })]);
  for (const [role, text] of steps) main.append(el("div", { class: `step step-${role}`, text, dataset: { role } }));
  if (hasLatchedFire(i)) main.append(el("div", { class: "latch", text: t("latch.mark"), dataset: { role: "latched" } }));
  // Its alarms, folded by default: the count says how many.
  const expanded = board.expanded.has(i.id);
  const list = el("ol", { class: "alarms", dataset: { role: "alarms" } }, ...rows.map((a) => alarmRow(a, i.place)));
  list.hidden = !expanded;
  main.append(el("button", { class: "fold link", text: `${expanded ? "▾" : "▸"} ${t("inc.alarms", { n: rows.length })}`,
    dataset: { role: "toggle-alarms" }, attrs: { "aria-expanded": String(expanded) },
    on: { click: () => { if (board.expanded.has(i.id)) board.expanded.delete(i.id); else board.expanded.add(i.id); renderBoard(); } } }), list);
  const side = el("div", { class: "side" },
    el("span", { class: "state", dataset: { role: "state" },
      text: i.state === "open" ? t(unacked ? "inc.unacked" : "inc.acked") : `${label("istate", i.state)}·${t(unacked ? "inc.unacked" : "inc.acked")}` }));
  const buttons = incidentButtons(i);
  // Where it is, drawn (GB 25506-2010): its first floor's plan, its devices blinking.
  const floor = (i.floors || [])[0];
  if (floor && extraViews.has("plan")) {
    buttons.push(el("a", { class: "plan-link", text: t("plan.open"), dataset: { role: "plan" },
      attrs: { href: `#/plan/${floor}?incident=${encodeURIComponent(i.id)}` } }));
  }
  if (buttons.length) side.append(el("div", { class: "btns" }, ...buttons));
  return el("li", { class: cls, dataset: { incidentId: i.id, kind: i.kind, category: i.category, state: i.state,
    acked: String(!unacked), verification: i.verification, alarms: rows.length } },
    el("span", { class: "badge", text: catLabel(i.category) }), main, side);
}

function renderList(listNode, emptyNode, items) {
  clear(listNode);
  for (const x of items) listNode.append(x.inc ? incidentCard(x.inc) : alarmCard(x.alarm));
  emptyNode.hidden = items.length > 0;
}

/** The open incidents and the unrecorded alarms. While the database is down the lists answer 503:
 * the board keeps the incidents it had, shows the unrecorded alarms, and tries again after
 * Retry-After (the banner says why). */
async function refreshBoard() {
  const began = live.tick;
  const read = ++board.reads;
  const [incs, unrec] = await Promise.allSettled([
    api("/api/v1/incidents", { params: { open: true, limit: 500 } }),
    api("/api/v1/alarms/unrecorded"),
  ]);
  // Reads can answer out of order (a slow answer on a busy server): one begun before a read already
  // applied is older news, and would put back a card that has gone since.
  const stale = read < board.applied;
  if (!stale) board.applied = read;
  const failed = [incs, unrec].filter((r) => r.status === "rejected").map((r) => r.reason);
  const signedOut = failed.find((e) => e instanceof SignedOut);
  if (signedOut) throw signedOut;
  const down = failed.find(isOutage) || null;
  let failing = false;
  if (unrec.status === "rejected" && !isOutage(unrec.reason)) console.error(unrec.reason);
  if (unrec.status === "fulfilled" && !stale) {
    const items = unrec.value && Array.isArray(unrec.value.items) ? unrec.value.items : [];
    // An alarm the stream said is recorded while this list was read stays off it.
    board.unrecorded = new Map(items.map(unrecordedAlarm).filter(Boolean).map((a) => [alarmKey(a), a])
      .filter(([key]) => (board.recordedAt.get(key) ?? -1) < began));
    for (const [key, tick] of board.recordedAt) if (tick < began) board.recordedAt.delete(key); // read since
    failing = unrec.value && unrec.value.storage_failing === true;
  }
  // Unrecorded cards wait for their alarms to be recorded: read again until none is left.
  clearTimeout(board.unrecTimer);
  if (board.unrecorded.size) board.unrecTimer = setTimeout(() => { if (session.me) scheduleRefresh(); }, 5000);
  let other = null;
  if (incs.status === "fulfilled" && !stale) {
    const items = itemsOf(incs.value, "incidents").filter(validIncident);
    const next = new Map();
    for (const i of items) {
      const seen = board.incidents.get(i.id);
      const liveSince = (board.liveAt.get(i.id) ?? -1) >= began;
      // Closed by a step that came live while this list was read (a step that leaves an incident
      // open keeps it on the board): the list is older news, the card stays gone.
      if (liveSince && !seen) continue;
      // A step that came live while this list was read may be newer than what the list says:
      // keep it (with the list's alarms); the next read, due after that step, settles it.
      next.set(i.id, seen && liveSince ? { ...i, ...seen, alarms: i.alarms } : i);
    }
    for (const [id, seen] of board.incidents) {
      if (!next.has(id) && (board.liveAt.get(id) ?? -1) >= began && seen.state !== "closed") next.set(id, seen);
    }
    board.incidents = next;
    for (const [id, tick] of board.liveAt) {
      if (tick < began) { board.liveAt.delete(id); if (!next.has(id)) board.lastEvent.delete(id); }
    }
  } else if (incs.status === "rejected" && !isOutage(incs.reason)) {
    other = incs;
  }
  if (!places.loaded) await guarded(loadPlaces);
  mergeBoard();
  renderBoard();
  if (down) storageDown(down.retryAfter);
  else if (failing) storageDown();
  else if (!other) storageUp(); // the lists answer and the service says the store records
  if (other) throw other.reason;
}

/** An incident step from the stream (`{"type": "incident", ...}`): the card changes at once. Steps
 * of one incident are kept in event id order (an older one arriving late is ignored); a closed
 * incident leaves the board. */
function applyIncidentStep(msg) {
  const snap = msg.incident;
  if (!validIncident(snap) || typeof msg.event_id !== "number") return;
  if ((board.lastEvent.get(snap.id) ?? -1) >= msg.event_id) return;
  board.lastEvent.set(snap.id, msg.event_id);
  board.liveAt.set(snap.id, live.tick);
  const seen = board.incidents.get(snap.id);
  if (snap.state === "closed") {
    board.incidents.delete(snap.id);
    board.expanded.delete(snap.id);
  } else {
    const keptName = seen && seen.place === snap.place ? seen.place_name : "";
    board.incidents.set(snap.id, { ...(seen || {}), ...snap, place_name: snap.place_name || keptName, alarms: seen ? incAlarms(seen) : [] });
  }
  mergeBoard();
  renderBoard();
}

function renderBoard() {
  renderList($("board-list"), $("board-empty"), board.fire);
  renderList($("gas-list"), $("gas-empty"), board.gas);
  countChips($("board-counts"), board.fire);
  countChips($("gas-counts"), board.gas);
  const fires = board.fire.filter((x) => (x.inc ? x.inc.category === "fire" && x.inc.state === "open" : x.alarm.category === "fire" && ACTIVE.has(x.alarm.state))).length;
  $("board-fire").textContent = fires ? `${t("board.fire_strip")} ${fires}` : "";
  const due = board.fire.concat(board.gas).filter((x) => x.inc && call119Due(x.inc));
  $("board-119").hidden = !due.length;
  $("board-119").textContent = due.length ? `${t("inc.call119_due")}：${due.map((x) => incPlace(x.inc)).join("、")}` : "";
  tickClocks();
  // The beep repeats until every fire incident is acknowledged (and for an unrecorded fire alarm).
  sound.update(board.fire.some((x) => (x.inc ? x.inc.kind === "fire" && x.inc.category === "fire" && incUnacked(x.inc)
    : x.alarm.category === "fire" && x.alarm.state === "active_unacknowledged")));
}

// --- acknowledge ----------------------------------------------------------------------------------

let ackAlarm = null;

const alarmWhat = (a) => `${catLabel(a.category)} · ${placeName(a.place)} · ${a.device_id} · ${alarmTypeText(a)}`;

function openAck(a) {
  ackAlarm = a;
  $("ack-what").textContent = alarmWhat(a);
  $("ack-as").textContent = t("ack.as", { who: whoName() });
  $("ack-note").value = "";
  $("ack-false").checked = false;
  $("ack-error").textContent = "";
  $("ack-dialog").showModal();
  $("ack-note").focus();
}

async function submitAck(ev) {
  ev.preventDefault();
  $("ack-submit").disabled = true;
  try {
    await api(`/api/v1/alarms/${encodeURIComponent(ackAlarm.id)}/acknowledge`, {
      method: "POST", body: { note: $("ack-note").value, false_alarm: $("ack-false").checked },
    });
    $("ack-dialog").close();
    await guarded(refreshCurrent);
  } catch (err) {
    $("ack-error").textContent = err.message || String(err);
  } finally {
    $("ack-submit").disabled = false;
  }
}

// --- incident steps: 受理, 核实中, the verdict, 119, 复位 -------------------------------------------------

let incAction = null;

const INC_PATHS = { ack: "acknowledge", verify: "verify", verdict: "verdict", call119: "call-119", reset: "reset", drill: "out-of-drill" };

function incidentWhat(i) {
  return `${label("ikind", i.kind)} · ${catLabel(i.category)} · ${incPlace(i)} · ${t("inc.devices", { d: i.device_count, n: i.alarm_count })}`;
}

function openIncidentAction(action, i) {
  incAction = { action, id: i.id };
  $("inc-title").textContent = t(`inc.${action}_title`);
  $("inc-what").textContent = incidentWhat(i);
  $("inc-as").textContent = t("inc.as", { who: whoName() });
  for (const f of $("inc-form").querySelectorAll("[data-for]")) {
    const fors = f.dataset.for.split(" ");
    f.hidden = !(fors.includes("*") || fors.includes(action));
  }
  $("inc-confirm").hidden = !["reset", "call119", "drill"].includes(action);
  $("inc-confirm").textContent = action === "reset" ? t("reset.confirm") : action === "call119" ? t("inc.call119_confirm") : action === "drill" ? t("inc.drill_confirm") : "";
  $("inc-verdict-confirmed").textContent = verdictLabel(i, "confirmed");
  for (const r of $("inc-form").querySelectorAll('input[name="inc-verdict"]')) r.checked = false;
  $("inc-cause").value = "";
  $("inc-cause-field").hidden = true;
  $("inc-verifier").value = "";
  $("inc-note").value = "";
  $("inc-error").textContent = "";
  $("inc-submit").textContent = t(`inc.${action}_submit`);
  $("inc-submit").dataset.action = action;
  $("inc-dialog").showModal();
  (action === "verify" ? $("inc-verifier") : action === "verdict" ? $("inc-form").querySelector('input[name="inc-verdict"]') : $("inc-note")).focus();
}

const chosenVerdict = () => ($("inc-form").querySelector('input[name="inc-verdict"]:checked') || {}).value || "";

function onVerdictChange() {
  $("inc-cause-field").hidden = chosenVerdict() !== "false_alarm";
  $("inc-error").textContent = "";
}

async function submitIncidentAction(ev) {
  ev.preventDefault();
  const { action, id } = incAction;
  const body = { note: $("inc-note").value.trim() };
  if (action === "verify") body.verifier = $("inc-verifier").value.trim();
  if (action === "verdict") {
    body.verdict = chosenVerdict();
    if (!body.verdict) { $("inc-error").textContent = t("inc.need_verdict"); return; }
    if (body.verdict === "false_alarm") {
      body.cause = $("inc-cause").value;
      if (!body.cause) { $("inc-error").textContent = t("inc.need_cause"); return; }
    }
  }
  $("inc-submit").disabled = true;
  try {
    const step = await api(`/api/v1/incidents/${encodeURIComponent(id)}/${INC_PATHS[action]}`, { method: "POST", body });
    $("inc-dialog").close();
    if (step && typeof step.event_id === "number" && validIncident(step.incident)) applyIncidentStep(step);
    await guarded(refreshCurrent);
  } catch (err) {
    $("inc-error").textContent = err.message || String(err);
  } finally {
    $("inc-submit").disabled = false;
  }
}

// --- clear, shelve, unshelve ------------------------------------------------------------------------

let alarmAction = null;

function openAlarmAction(action, a) {
  alarmAction = { action, alarm: a };
  $("alarm-title").textContent = t(`${action}.title`);
  $("alarm-what").textContent = alarmWhat(a);
  $("alarm-duration-field").hidden = action !== "shelve";
  $("alarm-confirm").hidden = action !== "reset";
  $("alarm-confirm").textContent = action === "reset" ? t("reset.confirm") : "";
  $("alarm-note-label").textContent = action === "shelve" ? t("shelve.reason") : t("ack.note");
  $("alarm-note").value = "";
  $("alarm-note").setAttribute("aria-required", String(action === "shelve")); // checked on submit, with our message
  $("alarm-error").textContent = "";
  $("alarm-submit").textContent = t(`${action}.button`);
  $("alarm-submit").dataset.action = action;
  $("alarm-dialog").showModal();
  $("alarm-note").focus();
}

async function submitAlarmAction(ev) {
  ev.preventDefault();
  const { action, alarm } = alarmAction;
  const body = { note: $("alarm-note").value.trim() };
  if (action === "shelve") {
    if (!body.note) { $("alarm-error").textContent = t("shelve.need_note"); return; }
    // The service's clock: at a simulation's time scale an hour of shelving passes sooner.
    body.duration_s = Number($("alarm-duration").value);
  }
  $("alarm-submit").disabled = true;
  try {
    await api(`/api/v1/alarms/${encodeURIComponent(alarm.id)}/${action}`, { method: "POST", body });
    $("alarm-dialog").close();
    await guarded(refreshCurrent);
  } catch (err) {
    $("alarm-error").textContent = err.message || String(err);
  } finally {
    $("alarm-submit").disabled = false;
  }
}

// --- audible cue (on by default) ------------------------------------------------------------------
// A beep repeats while any fire incident is unacknowledged. Browsers may refuse to start audio on a
// page nobody has clicked yet (autoplay policy: the AudioContext stays suspended): the page then
// shows a banner whose button starts it (a click is what the browser waits for).

const sound = {
  on: store.get("fw.sound", "on") !== "off",
  timer: null,
  ctx: null,
  ringing: false,
  blocked: false,
  context() {
    if (!this.ctx) {
      this.ctx = new AudioContext();
      this.ctx.addEventListener("statechange", () => { if (this.ctx.state === "running") this.setBlocked(false); });
    }
    return this.ctx;
  },
  /** Whether the browser lets the page play now; asks it to, and shows the prompt if it will not. */
  check() {
    if (!this.on || !session.me) { this.setBlocked(false); return; }
    let ctx;
    try { ctx = this.context(); } catch { return; } // no audio at all: the board still blinks
    if (ctx.state === "running") { this.setBlocked(false); return; }
    ctx.resume().then(() => this.setBlocked(ctx.state !== "running"), () => this.setBlocked(true));
    // resume() without a click stays pending where autoplay is blocked: decide after a moment.
    setTimeout(() => { if (this.ctx && this.ctx.state !== "running") this.setBlocked(true); }, 500);
  },
  /** The banner's button: a click, so the browser allows the sound now. */
  unlock() {
    try {
      const ctx = this.context();
      ctx.resume().then(() => { this.setBlocked(ctx.state !== "running"); if (this.ringing) this.beep(); }, () => this.setBlocked(true));
    } catch { this.setBlocked(false); }
  },
  setBlocked(on) {
    this.blocked = Boolean(on) && this.on;
    $("sound-prompt").hidden = !(this.blocked && session.me);
    this.label();
  },
  beep() {
    try {
      const ctx = this.context();
      if (ctx.state !== "running") { this.check(); return; }
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.2;
      osc.connect(gain).connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.35);
    } catch { /* no audio device: the board still blinks */ }
  },
  update(unackedFire) {
    this.ringing = Boolean(unackedFire);
    const want = this.on && this.ringing;
    if (want && !this.timer) { this.beep(); this.timer = setInterval(() => this.beep(), 1500); }
    if (!want && this.timer) { clearInterval(this.timer); this.timer = null; }
    this.label();
  },
  toggle() {
    this.on = !this.on;
    store.set("fw.sound", this.on ? "on" : "off");
    if (this.on) this.unlock(); else this.setBlocked(false); // the toggle is a click: audio may start
    this.update(this.ringing);
  },
  label() {
    const b = $("sound");
    b.textContent = t(this.on ? "sound.on" : "sound.off");
    b.setAttribute("aria-pressed", String(this.on));
    b.dataset.sound = this.on ? (this.blocked ? "blocked" : "on") : "off";
    b.dataset.ringing = String(Boolean(this.timer));
  },
};

// --- live updates over the WebSocket --------------------------------------------------------------

// `tick` counts the messages applied, so a list read can tell which steps came in while it was read.
const live = { ws: null, after: null, events: 0, tick: 0, retryMs: 1000, timer: null, refreshTimer: null, stopped: true };
/** Views of their own (window.fw.onLive) told of every stream message, after the board applied it. */
const liveListeners = new Set();

function setConn(state) {
  $("conn").dataset.state = state;
  $("conn").dataset.events = String(live.events);
  $("conn").textContent = t(`conn.${state}`);
}

function startLive() {
  live.stopped = false;
  live.retryMs = 1000;
  clearTimeout(live.timer);
  if (!live.ws) connect();
}

function stopLive() {
  live.stopped = true;
  clearTimeout(live.timer);
  clearTimeout(live.refreshTimer);
  const ws = live.ws;
  live.ws = null;
  if (ws) ws.close();
  setConn("closed");
}

function connect() {
  if (live.stopped) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${proto}//${location.host}/api/v1/stream/alarms/ws`);
  if (live.after !== null) url.searchParams.set("after", String(live.after));
  // A browser's WebSocket cannot send an Authorization header: the token goes in the query (the
  // service redacts it from its access log).
  url.searchParams.set("access_token", store.get("fw.token", ""));
  setConn("connecting");
  let ws;
  try { ws = new WebSocket(url); } catch (err) { showError(err); scheduleReconnect(); return; }
  live.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    live.retryMs = 1000;
    setConn("open");
    scheduleRefresh(); // anything between the last fetch and now
  };
  ws.onmessage = (msg) => {
    let tr;
    try { tr = JSON.parse(msg.data); } catch { return; }
    live.tick += 1;
    if (tr && tr.type === "incident") {
      // An incident step: its card changes at once. Numbered in the incident log, not the alarm
      // event log: the resume cursor stays. The alarms inside come with the re-read below.
      applyIncidentStep(tr);
    } else if (tr && tr.recorded === false) {
      // Detected while the database cannot record it: on the board at once, from the message
      // itself (the lists may be answering 503). It has no event id: the resume cursor stays.
      const a = unrecordedAlarm(tr.after);
      if (a) {
        board.unrecorded.set(alarmKey(a), a);
        board.recordedAt.delete(alarmKey(a));
        mergeBoard();
        renderBoard();
        storageDown();
      }
    } else if (tr && typeof tr.event_id === "number") {
      live.after = Math.max(live.after ?? 0, tr.event_id);
      // Recorded now: its unrecorded card gives way to the recorded alarm at the next fetch.
      if (tr.after && typeof tr.after === "object") {
        board.unrecorded.delete(alarmKey(tr.after));
        board.recordedAt.set(alarmKey(tr.after), live.tick);
      }
    }
    live.events += 1;
    $("conn").dataset.events = String(live.events);
    scheduleRefresh();
    for (const fn of liveListeners) { try { fn(tr); } catch (err) { showError(err); } }
  };
  ws.onclose = () => {
    if (live.ws !== ws) return; // replaced or stopped on purpose
    live.ws = null;
    setConn("closed");
    // A refused handshake looks like any failed connection to the page: ask whether the session
    // still holds (a 401 there returns to the sign-in screen and stops reconnecting).
    if (!opened) guarded(() => api("/api/v1/auth/me"));
    scheduleReconnect();
  };
  ws.onerror = () => { /* onclose follows */ };
}

function scheduleReconnect() {
  clearTimeout(live.timer);
  if (live.stopped) return;
  live.timer = setTimeout(connect, live.retryMs);
  live.retryMs = Math.min(live.retryMs * 2, 15000);
}

/** Transitions come in bursts (a fire raises a dozen detectors): one re-fetch per burst. */
function scheduleRefresh() {
  clearTimeout(live.refreshTimer);
  live.refreshTimer = setTimeout(() => guarded(refreshLive), 200);
}

async function refreshLive() {
  if (!session.me) return;
  await refreshBoard();
  if (route.view === "places") await renderPlaces(false);
  if (route.view === "device") {
    await loadPlaces();
    renderTree();
    await refreshDeviceAlarms();
  }
}

// --- place tree -----------------------------------------------------------------------------------

const expanded = new Set(JSON.parse(store.get("fw.expanded", "[]") || "[]"));
let openAlarms = [];

function worstCategory(status) {
  const w = status && status.worst;
  return w && CATEGORIES.includes(w.category) ? w.category : "normal";
}

function treeNode(place, children) {
  const cat = worstCategory(place.status);
  const gas = place.status && place.status.worst_gas ? place.status.worst_gas.category : null;
  const kids = children.get(place.path) || [];
  const isOpen = expanded.has(place.path);
  const selected = route.view === "places" && route.arg === place.path;
  const row = el("div", { class: `node${selected ? " selected" : ""}`, dataset: { path: place.path, worst: cat } },
    kids.length
      ? el("button", { class: "toggle", text: isOpen ? "▾" : "▸", attrs: { "aria-label": "toggle", "aria-expanded": isOpen },
        on: { click: () => { isOpen ? expanded.delete(place.path) : expanded.add(place.path); store.set("fw.expanded", JSON.stringify([...expanded])); renderTree(); } } })
      : el("span", { class: "toggle" }),
    el("span", { class: `dot cat-${cat}`, title: catLabel(cat) }),
    gas ? el("span", { class: `dot gas cat-${gas}`, title: `${t("gas.title")}: ${catLabel(gas)}` }) : null,
    el("button", { class: "name", text: place.name || place.path, on: { click: () => { location.hash = `#/places/${place.path}`; } } }),
    el("span", { class: "kind", text: label("kind", place.kind) }),
    place.status && place.status.active ? el("span", { class: "n", text: `(${place.status.active})` }) : null);
  const li = el("li", { attrs: { role: "treeitem" } }, row);
  if (kids.length && isOpen) li.append(el("ul", { attrs: { role: "group" } }, ...kids.map((k) => treeNode(k, children))));
  return li;
}

function renderTree() {
  const children = new Map();
  const roots = [];
  for (const p of places.list) {
    if (!TREE_KINDS.has(p.kind)) continue;
    if (p.parent && places.byPath.has(p.parent)) {
      if (!children.has(p.parent)) children.set(p.parent, []);
      children.get(p.parent).push(p);
    } else roots.push(p);
  }
  for (const r of roots) if (!expanded.size) expanded.add(r.path);
  clear($("tree")).append(...roots.map((r) => treeNode(r, children)));
}

const devices = { list: null };

async function loadDevices() {
  if (!devices.list) devices.list = await allPages("/api/v1/devices");
  return devices.list;
}

function deviceStates() {
  const worst = new Map();
  const rank = (c) => CATEGORIES.indexOf(c);
  for (const a of openAlarms) {
    if (!ACTIVE.has(a.state)) continue;
    const cur = worst.get(a.device_id);
    if (cur === undefined || rank(a.category) < rank(cur)) worst.set(a.device_id, a.category);
  }
  return worst;
}

async function renderPlaces(full = true) {
  await loadPlaces();
  openAlarms = itemsOf(await api("/api/v1/alarms", { params: { open: true, limit: 1000 } }), "alarms");
  const path = route.view === "places" ? route.arg : null;
  if (path) for (let i = 1; i < path.split("/").length; i++) expanded.add(path.split("/").slice(0, i).join("/"));
  renderTree();
  if (route.view !== "places") return;
  $("device").hidden = true;
  $("zone").hidden = !path;
  $("places-hint").hidden = Boolean(path);
  if (!path) return;
  const place = places.byPath.get(path);
  $("zone-title").textContent = place ? `${placeName(path)}（${label("kind", place.kind)}）` : path;
  if (place) countChips($("zone-counts"), openAlarms.filter((a) => a.place === path || a.place.startsWith(`${path}/`)));
  if (full || !devices.list) await loadDevices();
  const here = devices.list.filter((d) => d.place === path || d.place.startsWith(`${path}/`));
  const states = deviceStates();
  const body = clear($("zone-devices").tBodies[0]);
  for (const d of here) {
    const cat = states.get(d.id) || "normal";
    body.append(el("tr", { dataset: { deviceId: d.id }, on: { click: () => { location.hash = `#/device/${encodeURIComponent(d.id)}`; } } },
      el("td", {}, el("a", { text: d.id, attrs: { href: `#/device/${encodeURIComponent(d.id)}` } })),
      el("td", { text: d.name }), el("td", { text: label("dkind", d.kind) }),
      el("td", { text: placeName(d.place) }),
      el("td", {}, el("span", { class: `pill cat-${cat}`, text: catLabel(cat) }))));
  }
  $("zone-title").append(el("span", { class: "muted", text: `  ${t("places.devices", { n: here.length })}` }));
}

// --- device drill-down ----------------------------------------------------------------------------

let profiles = null;
const deviceView = { id: null, device: null };

async function renderDevice(id) {
  $("zone").hidden = true;
  $("places-hint").hidden = true;
  $("device").hidden = false;
  await loadPlaces(); // fresh statuses for the tree beside the drill-down
  const d = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
  if (!d || typeof d.id !== "string") throw new ApiError(t("error.format", { detail: "device" }));
  deviceView.id = id; deviceView.device = d;
  const parts = d.place.split("/");
  for (let i = 1; i < Math.min(parts.length, 4); i++) expanded.add(parts.slice(0, i).join("/"));
  renderTree();
  $("device-title").textContent = `${d.name || d.id} · ${d.id}`;
  const zone = d.place.split("/").slice(0, 4).join("/");
  $("device-back").setAttribute("href", `#/places/${zone}`);
  if (profiles === null) {
    try { profiles = await api("/console/profiles.json"); } catch { profiles = {}; }
  }
  const prof = profiles[d.profile];
  const info = clear($("device-info"));
  const rows = [
    ["device.profile", prof ? (lang === "zh" ? prof.name_zh : prof.name) : d.profile],
    ["device.kind", label("dkind", d.kind)], ["device.system", label("sys", d.system)], ["device.place", placeName(d.place)],
    ["device.department", d.department], ["device.responsible", d.responsible],
    ["device.installed", d.installed || "—"], ["device.tags", (d.tags || []).join(", ") || "—"],
  ];
  for (const [k, v] of rows) info.append(el("dt", { text: t(k) }), el("dd", { text: v }));
  if (extraViews.has("plan") && parts.length >= 4) {
    info.append(el("dt", { text: t("plan.tab") }), el("dd", {}, el("a", { text: t("plan.open"), dataset: { role: "plan" },
      attrs: { href: `#/plan/${parts.slice(0, 3).join("/")}?device=${encodeURIComponent(d.id)}` } })));
  }
  const select = clear($("channel"));
  const channels = prof ? Object.entries(prof.channels) : [];
  for (const [name, c] of channels) {
    const lbl = lang === "zh" ? c.label_zh || c.label : c.label || c.label_zh;
    select.append(el("option", { text: `${lbl || name} (${c.unit})`, attrs: { value: name } }));
  }
  const log = await refreshDeviceAlarms();
  const preferred = log.find((a) => a.channel && channels.some(([n]) => n === a.channel));
  if (preferred) select.value = preferred.channel;
  await drawHistory();
}

async function refreshDeviceAlarms() {
  const id = deviceView.id;
  const log = itemsOf(await api("/api/v1/alarms", { params: { device_id: id, limit: 50 } }), "alarm log");
  if (deviceView.id !== id) return log;
  const body = clear($("device-alarms").tBodies[0]);
  for (const a of log) {
    body.append(el("tr", { dataset: { alarmId: a.id, state: a.state } },
      el("td", { text: fmtTime(a.first_ts) }),
      el("td", {}, el("span", { class: `pill cat-${a.category}`, text: catLabel(a.category) })),
      el("td", { text: alarmTypeText(a), title: detailText(a) }),
      el("td", { text: a.peak !== null && a.peak !== undefined ? `${fmtValue(a.value)} (max ${fmtValue(a.peak)})` : fmtValue(a.value) }),
      el("td", { text: label("state", a.state) }),
      el("td", { text: a.acked_by ? `${person(a.acked_by)} ${fmtTime(a.acked_ts)}${a.false_alarm ? t("ack.false_marked") : ""}${a.ack_note ? ` — ${a.ack_note}` : ""}` : "—" }),
      el("td", {}, el("div", { class: "btns" }, ...alarmButtons(a)))));
  }
  $("device-alarms-empty").hidden = log.length > 0;
  return log;
}

async function drawHistory() {
  const id = deviceView.id;
  const channel = $("channel").value;
  const canvas = $("chart");
  if (!channel) { drawChart(canvas, null, ""); return; }
  await syncClock();
  const end = serverNow();
  const h = await api(`/api/v1/devices/${encodeURIComponent(id)}/history`, {
    params: { channel, start: (end - 3600).toFixed(3), end: end.toFixed(3), buckets: 120 },
  });
  if (deviceView.id !== id) return;
  if (!h || !Array.isArray(h.ts) || !Array.isArray(h.value)) throw new ApiError(t("error.format", { detail: "history" }));
  const prof = profiles && profiles[deviceView.device.profile];
  const unit = prof && prof.channels[channel] ? prof.channels[channel].unit : "";
  drawChart(canvas, h, unit);
}

/** Min-max band and mean line per bucket, with time and value axes, on the canvas. */
function drawChart(canvas, h, unit) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 900;
  const cssH = Math.round(cssW * 0.3);
  canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cssW, cssH);
  const styles = getComputedStyle(document.body);
  const font = `${Math.max(11, Math.round(parseFloat(styles.fontSize) * 0.75))}px sans-serif`;
  g.font = font;
  const n = h ? Math.min(h.ts.length, h.value.length) : 0;
  canvas.dataset.points = String(n);
  $("chart-note").textContent = n ? t("history.points", { n }) : t("history.none");
  const L = 56, R = 12, T = 12, B = 28;
  const W = cssW - L - R, H = cssH - T - B;
  g.strokeStyle = "#2d3643"; g.lineWidth = 1;
  g.strokeRect(L, T, W, H);
  if (!n) return;
  const lo = h.min && h.min.length === n ? h.min : h.value;
  const hi = h.max && h.max.length === n ? h.max : h.value;
  let ymin = Math.min(...lo), ymax = Math.max(...hi);
  if (!isFinite(ymin) || !isFinite(ymax)) return;
  if (ymax - ymin < 1e-9) { ymin -= 1; ymax += 1; }
  const padY = (ymax - ymin) * 0.08; ymin -= padY; ymax += padY;
  const x0 = typeof h.start === "number" ? h.start : h.ts[0];
  const x1 = typeof h.end === "number" ? h.end : h.ts[n - 1];
  const X = (ts) => L + ((ts - x0) / (x1 - x0 || 1)) * W;
  const Y = (v) => T + H - ((v - ymin) / (ymax - ymin)) * H;
  // grid and labels
  g.fillStyle = "#9aa6b5"; g.textBaseline = "middle"; g.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const v = ymin + ((ymax - ymin) * i) / 4;
    g.strokeStyle = "#1f2630"; g.beginPath(); g.moveTo(L, Y(v)); g.lineTo(L + W, Y(v)); g.stroke();
    g.fillText(fmtValue(v), L - 6, Y(v));
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (let i = 0; i <= 6; i++) {
    const ts = x0 + ((x1 - x0) * i) / 6;
    g.textAlign = i === 0 ? "left" : i === 6 ? "right" : "center";
    g.fillText(fmtTime(ts, false).slice(0, 5), X(ts), T + H + 6);
  }
  if (unit) { g.textAlign = "left"; g.textBaseline = "top"; g.fillText(unit, L + 4, T + 2); }
  // min-max band
  g.fillStyle = "rgba(61, 139, 253, 0.25)";
  g.beginPath();
  for (let i = 0; i < n; i++) (i ? g.lineTo : g.moveTo).call(g, X(h.ts[i]), Y(hi[i]));
  for (let i = n - 1; i >= 0; i--) g.lineTo(X(h.ts[i]), Y(lo[i]));
  g.closePath(); g.fill();
  // mean line
  g.strokeStyle = "#79b8ff"; g.lineWidth = 2;
  g.beginPath();
  for (let i = 0; i < n; i++) (i ? g.lineTo : g.moveTo).call(g, X(h.ts[i]), Y(h.value[i]));
  g.stroke();
  if (n === 1) { g.fillStyle = "#79b8ff"; g.fillRect(X(h.ts[0]) - 2, Y(h.value[0]) - 2, 4, 4); }
}

// --- tickets --------------------------------------------------------------------------------------

const tickets = { list: [], current: null };

async function renderTickets() {
  const open = $("tickets-open").checked;
  const mine = $("tickets-mine").checked;
  const page = await api("/api/v1/tickets", { params: { open: open ? true : undefined, mine: mine ? true : undefined, limit: 200 } });
  tickets.list = itemsOf(page, "tickets");
  if (!places.loaded) await guarded(loadPlaces);
  const body = clear($("tickets").tBodies[0]);
  for (const tk of tickets.list) {
    const selected = route.view === "ticket" && String(tk.id) === route.arg;
    body.append(el("tr", { class: selected ? "selected" : "", dataset: { ticketId: tk.id, status: tk.status },
      on: { click: () => { location.hash = `#/tickets/${tk.id}`; } } },
      el("td", { dataset: { label: t("ticket.number") } }, el("a", { text: tk.number, attrs: { href: `#/tickets/${tk.id}` } })),
      el("td", { text: label("status", tk.status), dataset: { role: "status", label: t("ticket.status") } }),
      el("td", { dataset: { label: t("ticket.category") } }, el("span", { class: `pill cat-${tk.category}`, text: catLabel(tk.category) })),
      el("td", { text: placeName(tk.place), dataset: { label: t("ticket.place") } }),
      el("td", { text: tk.problem && tk.problem.length > 60 ? `${tk.problem.slice(0, 60)}…` : tk.problem, dataset: { label: t("ticket.problem") } }),
      el("td", { text: fmtTime(tk.deadline), dataset: { label: t("ticket.deadline") } }),
      el("td", { class: tk.overdue ? "overdue" : "empty-cell", text: tk.overdue ? t("ticket.overdue") : "" })));
  }
  $("tickets-empty").hidden = tickets.list.length > 0;
}

async function renderTicket(id) {
  const tk = await api(`/api/v1/tickets/${encodeURIComponent(id)}`);
  if (!tk || typeof tk.status !== "string") throw new ApiError(t("error.format", { detail: "ticket" }));
  tickets.current = tk;
  $("ticket").hidden = false;
  $("ticket-title").textContent = `${t("tickets.title")} ${tk.number}`;
  $("ticket-status").textContent = label("status", tk.status);
  $("ticket-status").dataset.status = tk.status;
  const info = clear($("ticket-info"));
  const rows = [
    ["ticket.status", label("status", tk.status)],
    ["ticket.category", catLabel(tk.category)], ["ticket.source", label("source", tk.source)],
    ["ticket.hazard_type", typeLabel(tk.hazard_type)], ["ticket.place", placeName(tk.place)],
    ["ticket.device", tk.device_id || "—"], ["ticket.department", tk.department || "—"],
    ["ticket.responsible", tk.responsible || "—"], ["ticket.inspection_time", fmtTime(tk.inspection_time)],
    ["ticket.inspectors", tk.inspectors], ["ticket.problem", tk.problem], ["ticket.measures", tk.measures || "—"],
    ["ticket.deadline", fmtTime(tk.deadline) + (tk.overdue ? ` (${t("ticket.overdue")})` : "")],
    ["ticket.assignee", tk.assignee || "—"], ["ticket.feedback", tk.feedback || "—"],
    ["ticket.feedback_signed_by", tk.feedback_signed_by ? `${person(tk.feedback_signed_by)} ${fmtTime(tk.feedback_signed_at)}` : "—"],
    ["ticket.confirmed_by", tk.confirmed_by ? `${person(tk.confirmed_by)} ${fmtTime(tk.confirmed_at)}` : "—"],
    ["ticket.leader_signed_by", tk.leader_signed_by ? `${person(tk.leader_signed_by)} ${fmtTime(tk.leader_signed_at)}` : "—"],
    ["ticket.occurrences", tk.occurrences],
  ];
  if (tk.ready_at) rows.push(["ticket.ready", fmtTime(tk.ready_at)]);
  for (const [k, v] of rows) info.append(el("dt", { text: t(k) }), el("dd", { text: v }));
  const events = clear($("ticket-events"));
  for (const e of tk.events || []) {
    const who = e.actor ? ` · ${person(e.actor)}${e.role ? ` (${label("role", e.role)})` : ""}` : "";
    events.append(el("li", { dataset: { action: e.action } },
      `${fmtTime(e.ts)} ${label("action", e.action)} → ${label("status", e.status_after)}${who}${e.note ? ` — ${e.note}` : ""}`));
  }
  const comments = clear($("ticket-comments"));
  for (const c of tk.comments || []) {
    comments.append(el("li", { dataset: { commentId: c.id } }, `${fmtTime(c.ts)} · ${person(c.author)} — `, el("span", { class: "text", text: c.text })));
  }
  $("ticket-comments-empty").hidden = comments.childElementCount > 0;
  const evidence = clear($("ticket-evidence").tBodies[0]);
  for (const e of tk.evidence || []) {
    evidence.append(el("tr", { dataset: { evidenceId: e.id } },
      el("td", {}, el("button", { class: "link", text: e.filename, title: e.content_type, dataset: { role: "download" },
        on: { click: () => guarded(() => downloadEvidence(tk.id, e)) } })),
      el("td", { text: fmtSize(e.size), dataset: { label: t("evidence.size") } }),
      el("td", { text: person(e.uploaded_by), dataset: { label: t("evidence.by") } }),
      el("td", { text: fmtTime(e.ts), dataset: { label: t("alarm.time") } }),
      el("td", { text: e.note || "—", dataset: { label: t("ack.note") } })));
  }
  $("ticket-evidence-empty").hidden = evidence.childElementCount > 0;
  await renderActions();
}

function fmtSize(n) {
  if (typeof n !== "number" || !isFinite(n)) return "—";
  if (n < 1024) return `${n} B`;
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Save `blob` as a download named `filename`. Files from the API need the Bearer header, so a plain
 * link cannot fetch them: the views fetch, then save the blob here. */
function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { attrs: { href: url, download: filename } });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function downloadEvidence(ticketId, e) {
  const resp = await request(`/api/v1/tickets/${encodeURIComponent(ticketId)}/evidence/${encodeURIComponent(e.id)}`, { accept: "*/*" });
  saveBlob(await resp.blob(), e.filename || "evidence");
}

async function submitComment(ev) {
  ev.preventDefault();
  const tk = tickets.current;
  const text = $("comment-text").value.trim();
  if (!text) { $("comment-error").textContent = t("comments.need"); return; }
  $("comment-submit").disabled = true;
  $("comment-error").textContent = "";
  try {
    await api(`/api/v1/tickets/${encodeURIComponent(tk.id)}/comments`, { method: "POST", body: { text, role: $("role").value } });
    $("comment-text").value = "";
    await guarded(() => renderTicket(tk.id));
  } catch (err) {
    $("comment-error").textContent = err.message || String(err);
  } finally {
    $("comment-submit").disabled = false;
  }
}

async function submitEvidence(ev) {
  ev.preventDefault();
  const tk = tickets.current;
  const file = $("evidence-photo").files[0] || $("evidence-file").files[0]; // a photo taken, else a file
  if (!file) { $("evidence-error").textContent = t("evidence.need"); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("role", $("role").value);
  form.append("note", $("evidence-note").value.trim());
  $("evidence-submit").disabled = true;
  $("evidence-error").textContent = "";
  try {
    await api(`/api/v1/tickets/${encodeURIComponent(tk.id)}/evidence`, { method: "POST", body: form });
    $("evidence-photo").value = "";
    $("evidence-file").value = "";
    $("evidence-note").value = "";
    await guarded(() => renderTicket(tk.id));
  } catch (err) {
    $("evidence-error").textContent = err.message || String(err);
  } finally {
    $("evidence-submit").disabled = false;
  }
}

async function renderActions() {
  const tk = tickets.current;
  const role = $("role").value;
  const box = clear($("ticket-actions"));
  const actions = await api("/console/ticket-actions.json", { params: { status: tk.status, role } });
  if (!Array.isArray(actions)) throw new ApiError(t("error.format", { detail: "ticket actions" }));
  for (const a of actions) {
    if (a === "comment" || a === "attach" || a === "edit") continue; // not transitions (edit: API only)
    box.append(el("button", { class: "primary", text: label("action", a), dataset: { action: a }, on: { click: () => openTransition(a) } }));
  }
  if (!box.childElementCount) box.append(el("span", { class: "muted", text: t("ticket.no_actions") }));
  $("comment-form").hidden = !actions.includes("comment");
  $("evidence-form").hidden = !actions.includes("attach");
}

let trAction = null;
const TR_NEEDS = { assign: ["tr-assignee"], rectify: ["tr-feedback"], reject: ["tr-note"], extend: ["tr-deadline", "tr-note"] };

function toLocalInput(ts) {
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function openTransition(action) {
  trAction = action;
  const tk = tickets.current;
  $("tr-title").textContent = `${label("action", action)} · ${tk.number}`;
  for (const f of $("tr-form").querySelectorAll("[data-for]")) {
    const fors = f.dataset.for.split(" ");
    f.hidden = !(fors.includes("*") || fors.includes(action));
  }
  $("tr-assignee").value = tk.assignee || whoName();
  $("tr-feedback").value = "";
  $("tr-note").value = "";
  $("tr-deadline").value = action === "extend" ? toLocalInput((tk.deadline || serverNow()) + 7 * 86400) : "";
  $("tr-error").textContent = "";
  $("tr-dialog").showModal();
}

async function submitTransition(ev) {
  ev.preventDefault();
  const tk = tickets.current;
  const missing = [...(TR_NEEDS[trAction] || [])].filter((id) => !$(id).value.trim());
  if (missing.length) {
    $("tr-error").textContent = t("ticket.need", { what: missing.map((id) => $(id).closest("label").querySelector("span").textContent).join("、") });
    return;
  }
  // Who acts is the signed-in user (their token); the role is the one chosen among theirs.
  const body = { action: trAction, role: $("role").value, note: $("tr-note").value.trim() };
  if (trAction === "assign") body.assignee = $("tr-assignee").value.trim();
  if (trAction === "rectify") body.feedback = $("tr-feedback").value.trim();
  if ((trAction === "assign" || trAction === "extend") && $("tr-deadline").value) {
    body.deadline = new Date($("tr-deadline").value).getTime() / 1000;
  }
  $("tr-submit").disabled = true;
  try {
    await api(`/api/v1/tickets/${encodeURIComponent(tk.id)}/transitions`, { method: "POST", body });
    $("tr-dialog").close();
    await guarded(() => renderTicket(tk.id));
    await guarded(renderTickets);
  } catch (err) {
    $("tr-error").textContent = err.message || String(err);
  } finally {
    $("tr-submit").disabled = false;
  }
}

// --- routing and the static labels ----------------------------------------------------------------

const route = { view: "board", arg: null };

// --- views that other scripts add (window.fw.registerView) ------------------------------------------
// The duty, drill, floor plan and history views each live in a script of their own, loaded after this
// one (console.html); each registers its route, its tab and how it draws itself, and uses the helpers
// exposed on window.fw, so the console's core stays one file and a feature stays in its own.

/** name -> { tabKey, roles, render(arg), section } */
const extraViews = new Map();

/** Add a view at `#/name[/arg]`: a tab labelled `tabKey` (shown to `roles`, or everyone when empty) and
 * a `<section id="view-name">` that `render(arg, section)` fills whenever the route or the language
 * changes. Returns the section. */
function registerView(name, { tabKey, roles = [], render }) {
  if (extraViews.has(name) || ["board", "places", "device", "tickets", "ticket"].includes(name)) throw new Error(`view ${name} exists`);
  const section = el("section", { class: "view", attrs: { id: `view-${name}`, hidden: "" } });
  $("app").append(section);
  $("tabs").append(el("a", { class: "tab", text: t(tabKey), attrs: { href: `#/${name}`, id: `tab-${name}` }, dataset: { i18n: tabKey } }));
  extraViews.set(name, { tabKey, roles, render, section });
  return section;
}

/** Strings of a script's own, merged into I18N (Chinese first; English for the toggle). */
function addI18n(zh, en) {
  Object.assign(I18N.zh, zh);
  Object.assign(I18N.en, en);
}

/** A view's tab shows to the roles it names (admin sees every tab). */
function showExtraTabs() {
  const held = heldRoles();
  for (const [name, v] of extraViews) {
    $(`tab-${name}`).hidden = v.roles.length > 0 && !held.some((r) => r === "admin" || v.roles.includes(r));
  }
}

function parseRoute() {
  const h = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [head, ...rest] = h.split("/");
  const arg = rest.join("/") || null;
  if (extraViews.has(head)) return { view: head, arg };
  if (head === "places") return { view: "places", arg };
  if (head === "device" && arg) return { view: "device", arg };
  if (head === "tickets") return arg ? { view: "ticket", arg } : { view: "tickets", arg: null };
  return { view: "board", arg: null };
}

async function refreshCurrent() {
  const extra = extraViews.get(route.view);
  if (extra) await extra.render(route.arg, extra.section);
  else if (route.view === "board") await refreshBoard();
  else if (route.view === "places") await renderPlaces();
  else if (route.view === "device") await renderDevice(route.arg);
  else {
    await renderTickets();
    if (route.view === "ticket") await renderTicket(route.arg);
    else $("ticket").hidden = true;
  }
}

async function onRoute() {
  if (!session.me) return; // the sign-in screen is showing; enterApp routes afterwards
  Object.assign(route, parseRoute());
  const tab = route.view === "device" ? "places" : route.view === "ticket" ? "tickets" : route.view;
  for (const v of ["board", "places", "tickets", ...extraViews.keys()]) {
    $(`view-${v}`).hidden = v !== tab;
    const link = $(`tab-${v}`);
    if (v === tab) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (route.view !== "device") deviceView.id = null;
  hideError();
  await guarded(refreshCurrent);
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = `${t("app.title")} · firewatch`;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("lang").textContent = t("lang.other");
  $("lang").setAttribute("lang", lang === "zh" ? "en" : "zh-CN");
  if (session.me) { fillRoles(); renderWho(); showExtraTabs(); }
  sound.label();
  setConn($("conn").dataset.state || "connecting");
}

/** The ticket view's role picker: only the roles the user holds. The choice is kept (fw.role) and
 * sent as the ticket requests' `role`; the buttons are those the workflow gives that role. */
function fillRoles() {
  const held = heldRoles();
  const options = held.length ? held : ["viewer"];
  const work = session.roleSets ? session.roleSets.ticket_work : ROLES.filter((r) => r !== "viewer");
  const current = $("role").value || store.get("fw.role", "");
  clear($("role")).append(...options.map((r) => el("option", { text: t(`role.${r}`), attrs: { value: r } })));
  $("role").value = options.includes(current) ? current : options.find((r) => work.includes(r)) || options[0];
  $("role").disabled = options.length < 2;
}

function startTimers() {
  setInterval(() => { if (session.me) guarded(syncClock); }, 30000);
  setInterval(() => { if (session.me) guarded(refreshBoard); }, FALLBACK_POLL_MS);
  setInterval(() => { if (session.me && (route.view === "tickets" || route.view === "ticket")) guarded(renderTickets); }, 15000);
}

function init() {
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    store.set("fw.lang", lang);
    applyLanguage();
    if (session.me) guarded(refreshCurrent);
  });
  $("login-form").addEventListener("submit", submitLogin);
  $("signout").addEventListener("click", signOut);
  $("sound").addEventListener("click", () => sound.toggle());
  $("sound-enable").addEventListener("click", () => sound.unlock());
  $("inc-form").addEventListener("submit", submitIncidentAction);
  $("inc-cancel").addEventListener("click", () => $("inc-dialog").close());
  for (const r of $("inc-form").querySelectorAll('input[name="inc-verdict"]')) r.addEventListener("change", onVerdictChange);
  $("inc-cause").addEventListener("change", () => { $("inc-error").textContent = ""; });
  const setWall = (on) => {
    document.body.classList.toggle("wall", on);
    $("wall").setAttribute("aria-pressed", String(on));
    store.set("fw.wall", on ? "on" : "off");
  };
  setWall(store.get("fw.wall", "off") === "on" || new URLSearchParams(location.search).has("wall"));
  $("wall").addEventListener("click", () => { setWall(!document.body.classList.contains("wall")); if (route.view === "device") guarded(drawHistory); });
  $("error-close").addEventListener("click", hideError);
  $("ack-form").addEventListener("submit", submitAck);
  $("ack-cancel").addEventListener("click", () => $("ack-dialog").close());
  $("tr-form").addEventListener("submit", submitTransition);
  $("tr-cancel").addEventListener("click", () => $("tr-dialog").close());
  $("alarm-form").addEventListener("submit", submitAlarmAction);
  $("alarm-cancel").addEventListener("click", () => $("alarm-dialog").close());
  $("alarm-note").addEventListener("input", () => { $("alarm-error").textContent = ""; });
  $("comment-form").addEventListener("submit", submitComment);
  $("evidence-form").addEventListener("submit", submitEvidence);
  $("role").addEventListener("change", () => { store.set("fw.role", $("role").value); if (tickets.current) guarded(renderActions); });
  $("channel").addEventListener("change", () => guarded(drawHistory));
  $("tickets-open").addEventListener("change", () => guarded(renderTickets));
  $("tickets-mine").addEventListener("change", () => guarded(renderTickets));
  window.addEventListener("hashchange", onRoute);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (route.view === "device") guarded(drawHistory); }, 300);
  });
  applyLanguage();
  setInterval(() => { $("clock").textContent = fmtTime(serverNow()); tickClocks(); }, 1000);
  syncClock().then(() => { $("clock").textContent = fmtTime(serverNow()); });
  boot();
}

// What the view scripts may use. Everything they show goes through t() and el() like the rest.
window.fw = Object.freeze({
  registerView, addI18n, t, el, $, clear, api, request, allPages, guarded, showError, hideError, saveBlob,
  fmtTime, fmtDur, fmtValue, serverNow, placeName, loadPlaces, places, catLabel, label, typeLabel,
  alarmWhatText, alarmTypeText, detailText, person, session, heldRoles, whoName, store, ApiError, SignedOut, lang: () => lang,
  route: () => ({ ...route }),
  onLive: (fn) => { liveListeners.add(fn); },
});

document.addEventListener("DOMContentLoaded", init);
